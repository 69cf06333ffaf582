"""`/health`, `/config` and `/metrics`: what a running server says about itself."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from voicebot.config import Settings
from voicebot.observability.prometheus import CONTENT_TYPE, VoicebotMetrics
from voicebot.providers import breaker
from voicebot.server.state import ModelState


def status_router(
    state: ModelState,
    settings: Settings,
    metrics: VoicebotMetrics,
    decisions: dict[str, str] | None = None,
) -> APIRouter:
    router = APIRouter()

    @router.get("/health")
    async def health() -> JSONResponse:
        if state.drain.draining:
            return JSONResponse({"status": "draining"}, status_code=503)
        if state.models is None:
            body: dict[str, Any] = {"status": "failed" if state.error else "loading"}
            if state.error:
                body["error"] = state.error
            return JSONResponse(body, status_code=503)
        stt = state.models.stt
        return JSONResponse(
            {
                "status": "ok",
                "running": state.models.running,
                "load_ms": {k: round(v) for k, v in state.models.load_ms.items()},
                "warm_ms": {k: round(v) for k, v in state.warm_ms.items()},
                "stt": {**stt.description, **stt.stats.summary()},
                # Remote providers' circuit breakers: closed, open or half_open.
                "breakers": breaker.summary(),
            }
        )

    @router.get("/config")
    async def config() -> dict[str, Any]:
        return {**settings.redacted(), "auto": decisions or {}}

    @router.get("/metrics")
    async def prometheus_metrics() -> Response:
        # Rendering reads NVML, which can block for a moment: keep it off the event loop.
        body = await asyncio.to_thread(metrics.render)
        return Response(body, media_type=CONTENT_TYPE)

    return router
