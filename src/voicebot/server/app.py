"""The FastAPI app: loads and warms the shared models once, then routes sessions to them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, WebSocket
from fastapi.responses import JSONResponse, Response
from loguru import logger

from voicebot.config import Settings
from voicebot.models import SharedModels
from voicebot.observability.events import ProtocolEventObserver
from voicebot.observability.metrics_observer import SessionMetrics
from voicebot.observability.prometheus import CONTENT_TYPE, VoicebotMetrics
from voicebot.observability.tracing import setup_tracing
from voicebot.protocol import ErrorEvent, ReadyEvent, encode_event
from voicebot.providers import spec as providers
from voicebot.providers.tts.stage import output_sample_rate
from voicebot.server.daily import DailySessions
from voicebot.server.page import mount_pages
from voicebot.server.start import PIPECAT_WS_PATH, start_router
from voicebot.session import run_session
from voicebot.transports.pipecat_ws import PipecatWebsocketTransport
from voicebot.transports.webrtc import WebRTCRoutes
from voicebot.transports.websocket import VoicebotWebsocketTransport

# RFC 6455: "try again later", for clients that connect while models are loading.
CLOSE_TRY_AGAIN_LATER = 1013


class ModelState:
    """The shared models and how far their loading has got."""

    def __init__(self) -> None:
        self.models: SharedModels | None = None
        self.error: str | None = None
        self.warm_ms: dict[str, float] = {}

    async def load(self, settings: Settings) -> None:
        try:
            models = await asyncio.to_thread(SharedModels.load, settings)
            self.warm_ms = await asyncio.to_thread(models.warm)
        except Exception as e:  # reported by /health; the server stays up to say so
            self.error = f"{type(e).__name__}: {e}"
            logger.bind(error=self.error).error("model loading failed")
            return
        self.models = models


def create_app(
    settings: Settings,
    *,
    models: SharedModels | None = None,
    decisions: dict[str, str] | None = None,
) -> FastAPI:
    """The voicebot app for resolved `settings` (see voicebot.autotune).

    Pass `models` to reuse already-warm models (tests, `talk`); `decisions` are the
    auto-tuning reasons, shown by /config.
    """
    state = ModelState()
    metrics = VoicebotMetrics(
        models_loaded=lambda: sorted(state.models.load_ms) if state.models else []
    )
    setup_tracing(settings.observability.tracing)
    webrtc = WebRTCRoutes(lambda: state.models, settings, metrics=SessionMetrics(metrics, "webrtc"))
    daily = DailySessions(lambda: state.models, settings, metrics=SessionMetrics(metrics, "daily"))

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        loader: asyncio.Task[None] | None = None
        if models is not None:
            state.models = models
        else:
            # Fail start-up at once, naming the setting, if a model file is missing;
            # the slow load then runs while /health answers 503.
            providers.check(settings)
            loader = asyncio.create_task(state.load(settings))
        yield
        await daily.close()
        await webrtc.close()
        if loader is not None and not loader.done():
            loader.cancel()

    app = FastAPI(title="voicebot", lifespan=lifespan)
    app.state.models = state
    app.state.metrics = metrics
    app.include_router(start_router(webrtc, daily))
    app.include_router(webrtc.router)
    app.include_router(daily.router)

    @app.get("/health")
    async def health() -> JSONResponse:
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
            }
        )

    @app.get("/config")
    async def config() -> dict[str, Any]:
        return {**settings.redacted(), "auto": decisions or {}}

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        # Rendering reads NVML, which can block for a moment: keep it off the event loop.
        body = await asyncio.to_thread(metrics.render)
        return Response(body, media_type=CONTENT_TYPE)

    @app.websocket("/ws")
    async def ws_session(websocket: WebSocket) -> None:
        await websocket.accept()
        shared = state.models
        if shared is None:
            not_ready = ErrorEvent(
                code="not_ready", message="models are still loading; retry when /health is 200"
            )
            await websocket.send_text(encode_event(not_ready))
            await websocket.close(code=CLOSE_TRY_AGAIN_LATER, reason="models loading")
            return
        session_id = uuid.uuid4().hex[:12]
        transport = VoicebotWebsocketTransport(
            websocket,
            max_message_bytes=settings.server.max_message_bytes,
            audio_out_sample_rate=output_sample_rate(settings, shared),
            on_protocol_error=metrics.protocol_error,
        )
        ready = ReadyEvent(sample_rate=output_sample_rate(settings, shared), session_id=session_id)
        await websocket.send_text(encode_event(ready))
        observer = ProtocolEventObserver(sink=transport.send_event)
        await run_session(
            transport,
            shared,
            settings,
            session_id=session_id,
            observers=[observer],
            metrics=SessionMetrics(metrics, "ws"),
        )

    @app.websocket(PIPECAT_WS_PATH)
    async def pipecat_ws_session(websocket: WebSocket) -> None:
        await websocket.accept()
        shared = state.models
        if shared is None:
            await websocket.close(code=CLOSE_TRY_AGAIN_LATER, reason="models loading")
            return
        transport = PipecatWebsocketTransport(
            websocket,
            max_message_bytes=settings.server.max_message_bytes,
            audio_out_sample_rate=output_sample_rate(settings, shared),
            on_protocol_error=metrics.protocol_error,
        )
        # Pipecat's clients speak RTVI: client-ready -> bot-ready, transcripts, bot text.
        await run_session(
            transport,
            shared,
            settings,
            enable_rtvi=True,
            metrics=SessionMetrics(metrics, "ws_client"),
        )

    mount_pages(app)
    return app
