"""A local OpenAI-compatible chat-completions server (Groq's and vLLM's wire protocol).

Streams Server-Sent Events like the real services, and reproduces their failures on
demand: `rate_limited` (429 with retry-after), `error` (500), `unauthorized` (401),
`stall` (no bytes), `malformed` (a broken SSE event). Every request is recorded for assertions.
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
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.closing.wait(), 30)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        if self.mode == "malformed":
            await response.write(b"data: {this is not json\n\n")
            return response
        created = int(time.time())
        words = self.reply.split(" ")
        for i, word in enumerate(words):
            chunk = {
                "id": "chatcmpl-local",
                "object": "chat.completion.chunk",
                "created": created,
                "model": body.get("model"),
                "choices": [
                    {
                        "index": 0,
                        "delta": {"content": word if i == 0 else " " + word},
                        "finish_reason": None,
                    }
                ],
            }
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
            await asyncio.sleep(0.005)
        done = {
            "id": "chatcmpl-local",
            "object": "chat.completion.chunk",
            "created": created,
            "model": body.get("model"),
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        }
        await response.write(f"data: {json.dumps(done)}\n\ndata: [DONE]\n\n".encode())
        return response


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
