"""A local OpenAI-compatible chat-completions server (Groq's and vLLM's wire protocol).

Streams Server-Sent Events like the real services, and reproduces their failures on
demand: `rate_limited` (429 with retry-after), `error` (500), `unauthorized` (401),
`stall` (no bytes: hangs before its headers), `keepalive` (headers, a role-only chunk,
then SSE comments forever and no word), `drip` (a word every `drip_secs`), `empty` (a
complete stream without a word), `close_before` (headers, then the connection drops),
`close_after` (two words, then the connection drops), `malformed` (a broken SSE event).
Every request is recorded for assertions. (A refused connection needs no mode: point
the client at a port nothing listens on.)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class OpenAICompatServer:
    mode: str = "normal"
    reply: str = "Paris is the capital of France."
    requests: list[dict[str, Any]] = field(default_factory=list)
    port: int = 0
    # Set when the server shuts down, so a stalled request ends with it (not 30 s later).
    closing: asyncio.Event = field(default_factory=asyncio.Event)
    drip_secs: float = 3.0

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(
            {"path": request.path, "auth": request.headers.get("Authorization"), "body": body}
        )
        if self.mode == "rate_limited":
            return web.json_response(
                {
                    "error": {
                        "message": "Rate limit reached",
                        "type": "tokens",
                        "code": "rate_limit_exceeded",
                    }
                },
                status=429,
                headers={"retry-after": "50"},
            )
        if self.mode == "error":
            return web.json_response({"error": {"message": "internal error"}}, status=500)
        if self.mode == "unauthorized":
            return web.json_response({"error": {"message": "Invalid API Key"}}, status=401)
        if self.mode == "stall":
            await self._wait(30)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        if self.mode == "malformed":
            await response.write(b"data: {this is not json\n\n")
            return response
        model = body.get("model")
        await response.write(_event(model, {"role": "assistant", "content": ""}))
        if self.mode == "keepalive":
            while not self.closing.is_set():
                await response.write(b": keep-alive\n\n")
                await self._wait(0.5)
            return response
        if self.mode == "close_before":
            _drop(request)
            return response
        words = [] if self.mode == "empty" else self.reply.split(" ")
        # Like the real services: a reply longer than `max_tokens` (a word a token here)
        # stops there, with finish_reason "length".
        limit = body.get("max_tokens") or len(words)
        finish = "length" if len(words) > limit else "stop"
        if words:
            for i, word in enumerate(words[:limit]):
                if self.mode == "close_after" and i == 2:
                    _drop(request)
                    return response
                if self.mode == "drip":
                    await self._wait(self.drip_secs)
                await response.write(_event(model, {"content": word if i == 0 else " " + word}))
                await asyncio.sleep(0.005)
        await response.write(_event(model, {}, finish=finish) + b"data: [DONE]\n\n")
        return response

    async def _wait(self, secs: float) -> None:
        """Sleep, but end early when the server shuts down."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.closing.wait(), secs)


def _event(model: Any, delta: dict[str, Any], finish: str | None = None) -> bytes:
    chunk = {
        "id": "chatcmpl-local",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(chunk)}\n\n".encode()


def _drop(request: web.Request) -> None:
    """Close the TCP connection mid-response, as a crashed upstream would."""
    assert request.transport is not None
    request.transport.close()


@asynccontextmanager
async def openai_compat_server() -> AsyncIterator[OpenAICompatServer]:
    server = OpenAICompatServer()
    app = web.Application()
    app.router.add_post("/openai/v1/chat/completions", server._completions)  # Groq
    app.router.add_post("/v1/chat/completions", server._completions)  # vLLM
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield server
    finally:
        server.closing.set()
        await runner.cleanup()
