"""The voicebot server on a free loopback port inside this process (for `talk` and benchmarks)."""

from __future__ import annotations

import asyncio
from types import TracebackType

import uvicorn

from voicebot.config import Settings
from voicebot.models import SharedModels
from voicebot.server.app import create_app
from voicebot.server.ws_protocol import websocket_options


def without_session_limits(settings: Settings, sessions: int = 64) -> Settings:
    """`settings` with the session limits lifted, for load tests and benchmarks that open
    many sessions from one address on purpose."""
    server = settings.server.model_copy(
        update={
            "max_sessions": sessions,
            "max_sessions_per_client": 0,
            "rate_limit_burst": 100_000,
            "rate_limit_per_minute": 1_000_000.0,
        }
    )
    return settings.model_copy(update={"server": server})


class LocalServer:
    """`async with LocalServer(settings) as s:` loads and warms the models, serves on s.ws_url."""

    def __init__(self, settings: Settings, *, models: SharedModels | None = None) -> None:
        self._settings = settings
        self._models = models
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self.port = 0

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> LocalServer:
        models = self._models
        if models is None:
            models = await asyncio.to_thread(SharedModels.load, self._settings)
            await asyncio.to_thread(models.warm)
        config = uvicorn.Config(
            create_app(self._settings, models=models),
            host="127.0.0.1",
            port=0,
            log_level="warning",
            **websocket_options(self._settings.server.max_message_bytes),
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.02)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None and self._task is not None
        self._server.should_exit = True
        await self._task
