"""The shared models of a running server, how far their loading has got, and its drain."""

from __future__ import annotations

import asyncio
from concurrent.futures import Future

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

    async def load(self, settings: Settings, loading: Future[SharedModels] | None = None) -> None:
        """Wait for the models: `loading`, begun before the server started, or a new load."""
        if loading is None:
            loading = SharedModels.load_in_background(settings)
        try:
            models = await asyncio.wrap_future(loading)
            self.warm_ms = models.warm_ms
        except Exception as e:  # reported by /health; the server stays up to say so
            self.error = f"{type(e).__name__}: {e}"
            logger.bind(error=self.error).error("model loading failed")
            return
        self.models = models
