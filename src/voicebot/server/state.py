"""The shared models of a running server, how far their loading has got, and its drain."""

from __future__ import annotations

import asyncio

from loguru import logger

from voicebot.config import Settings
from voicebot.models import SharedModels
from voicebot.server.drain import Drain


class ModelState:
    """The shared models and how far their loading has got."""

    def __init__(self) -> None:
        self.models: SharedModels | None = None
        self.error: str | None = None
        self.warm_ms: dict[str, float] = {}
        # Set on SIGTERM (server.drain): /health says so and new sessions are refused.
        self.drain = Drain()

    async def load(self, settings: Settings) -> None:
        try:
            models = await asyncio.to_thread(SharedModels.load, settings)
            self.warm_ms = await asyncio.to_thread(models.warm)
        except Exception as e:  # reported by /health; the server stays up to say so
            self.error = f"{type(e).__name__}: {e}"
            logger.bind(error=self.error).error("model loading failed")
            return
        self.models = models
