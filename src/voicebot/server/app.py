"""The FastAPI app: loads and warms the shared models once, then hands sessions to them.

Only assembly lives here; the routes are in status.py, websockets.py, start.py, daily.py
and page.py, and the WebRTC ones in transports/webrtc.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from concurrent.futures import Future
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from voicebot.config import Settings
from voicebot.models import SharedModels
from voicebot.observability.metrics_observer import SessionMetrics
from voicebot.observability.prometheus import VoicebotMetrics
from voicebot.observability.tracing import setup_tracing
from voicebot.providers import spec as providers
from voicebot.server.auth import Access, AccessMiddleware, redact_tokens_in_server_logs
from voicebot.server.daily import DailySessions
from voicebot.server.limits import RateLimiter, RateLimitMiddleware, SessionGuard
from voicebot.server.page import mount_pages
from voicebot.server.start import start_router
from voicebot.server.state import ModelState
from voicebot.server.status import status_router
from voicebot.server.websockets import websocket_router
from voicebot.transports.webrtc import WebRTCRoutes


def create_app(
    settings: Settings,
    *,
    models: SharedModels | None = None,
    loading: Future[SharedModels] | None = None,
    decisions: dict[str, str] | None = None,
) -> FastAPI:
    """The voicebot app for resolved `settings` (see voicebot.autotune).

    Pass `models` to reuse already-warm models (tests, `talk`), or `loading` for models
    whose load began before the app was built (`SharedModels.load_in_background`);
    `decisions` are the auto-tuning reasons, shown by /config.
    """
    state = ModelState()
    metrics = VoicebotMetrics(
        models_loaded=lambda: sorted(state.models.load_ms) if state.models else []
    )
    setup_tracing(settings.observability.tracing)
    access = Access(settings)
    redact_tokens_in_server_logs()
    guard = SessionGuard(settings, metrics)
    webrtc = WebRTCRoutes(
        lambda: state.models,
        settings,
        guard=guard,
        metrics=SessionMetrics(metrics, "webrtc"),
        drain=state.drain,
    )
    daily = DailySessions(
        lambda: state.models,
        settings,
        guard=guard,
        metrics=SessionMetrics(metrics, "daily"),
        drain=state.drain,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        loader: asyncio.Task[None] | None = None
        if models is not None:
            state.models = models
        else:
            # Fail start-up at once, naming the setting, if a model file is missing;
            # the slow load then runs while /health answers 503.
            providers.check(settings)
            loader = asyncio.create_task(state.load(settings, loading))
        yield
        await daily.close()
        await webrtc.close()
        if loader is not None and not loader.done():
            loader.cancel()

    docs = settings.server.api_docs
    app = FastAPI(
        title="voicebot",
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )
    # Browsers send pages elsewhere no CORS headers unless listed (WebSockets: origins.py).
    # The last added runs first: CORS answers preflights, rate limits come before access.
    app.add_middleware(AccessMiddleware, access=access, on_refused=metrics.refusal)
    limiter = RateLimiter(
        per_minute=settings.server.rate_limit_per_minute, burst=settings.server.rate_limit_burst
    )
    app.add_middleware(RateLimitMiddleware, limiter=limiter, on_refused=metrics.refusal)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.server.allowed_origins,
        allow_methods=["*"],
        allow_headers=["*"],
    )
    app.state.models = state
    app.state.drain = state.drain  # started by server.drain.DrainingServer on SIGTERM
    app.state.metrics = metrics
    app.state.webrtc = webrtc
    app.include_router(start_router(webrtc, daily, access))
    app.include_router(webrtc.router)
    app.include_router(daily.router)
    app.include_router(status_router(state, settings, metrics, decisions))
    app.include_router(websocket_router(state, settings, metrics, guard))

    mount_pages(app)
    return app
