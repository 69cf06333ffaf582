"""A local stand-in for Daily's REST API (rooms and meeting tokens) on 127.0.0.1.

Speaks the parts of https://api.daily.co/v1 that voicebot uses: `POST /rooms`,
`POST /meeting-tokens`, `GET`/`DELETE /rooms/{name}`, with bearer auth. Every request
is recorded. Fault modes reproduce Daily's failures on demand: `unauthorized` (401),
`rate_limited` (429), `error` (500 for the next `faults` requests), `hang` (no answer).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from aiohttp import web

API_KEY = "test-daily-key"


@dataclass
class DailyAPIServer:
    mode: str = "normal"
    # How many requests the fault mode applies to (then it answers normally again).
    faults: int = 1_000_000
    requests: list[dict[str, Any]] = field(default_factory=list)
    rooms: dict[str, dict[str, Any]] = field(default_factory=dict)
    tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def calls(self, method: str, path_prefix: str) -> list[dict[str, Any]]:
        return [
            r for r in self.requests if r["method"] == method and r["path"].startswith(path_prefix)
        ]

    @web.middleware
    async def _record_and_fault(self, request: web.Request, handler: Any) -> web.StreamResponse:
        body = await request.json() if request.body_exists else None
        self.requests.append(
            {
                "method": request.method,
                "path": request.path.removeprefix("/v1"),
                "auth": request.headers.get("Authorization"),
                "body": body,
            }
        )
        if request.headers.get("Authorization") != f"Bearer {API_KEY}":
            return _error(401, "authentication-error", "Invalid API key")
        if self.mode != "normal" and self.faults > 0:
            self.faults -= 1
            if self.mode == "unauthorized":
                return _error(401, "authentication-error", "Invalid API key")
            if self.mode == "rate_limited":
                return _error(429, "rate-limit-error", "Too many requests")
            if self.mode == "error":
                return _error(500, "server-error", "internal error")
            if self.mode == "hang":
                await asyncio.sleep(3600)
        response: web.StreamResponse = await handler(request)
        return response

    async def _create_room(self, request: web.Request) -> web.Response:
        body = await _body(request)
        name = body.get("name") or uuid.uuid4().hex[:10]
        room = {
            "id": str(uuid.uuid4()),
            "name": name,
            "api_created": True,
            "privacy": body.get("privacy", "public"),
            "url": f"https://voicebot-test.daily.co/{name}",
            "created_at": datetime.now(UTC).isoformat(),
            "config": body.get("properties", {}),
        }
        self.rooms[name] = room
        return web.json_response(room)

    async def _get_room(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self.rooms:
            return _error(404, "not-found", f"room {name} was not found")
        return web.json_response(self.rooms[name])

    async def _delete_room(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.deleted.append(name)
        if self.rooms.pop(name, None) is None:
            return _error(404, "not-found", f"room {name} was not found")
        return web.json_response({"deleted": True, "name": name})

    async def _create_token(self, request: web.Request) -> web.Response:
        properties = (await _body(request)).get("properties", {})
        if properties.get("room_name") not in self.rooms:
            return _error(400, "invalid-request-error", "room_name does not exist")
        token = f"token-{uuid.uuid4().hex}"
        self.tokens[token] = properties
        return web.json_response({"token": token})

    async def __aenter__(self) -> DailyAPIServer:
        app = web.Application(middlewares=[self._record_and_fault])
        app.router.add_post("/v1/rooms", self._create_room)
        app.router.add_get("/v1/rooms/{name}", self._get_room)
        app.router.add_delete("/v1/rooms/{name}", self._delete_room)
        app.router.add_post("/v1/meeting-tokens", self._create_token)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._runner.cleanup()


async def _body(request: web.Request) -> dict[str, Any]:
    # aiohttp keeps the body it already read for the recording middleware.
    return (await request.json() if request.body_exists else None) or {}


def _error(status: int, kind: str, info: str) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps({"error": kind, "info": info}),
        content_type="application/json",
    )
