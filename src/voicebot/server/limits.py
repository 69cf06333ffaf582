"""How much one server takes on: sessions overall and per client, request rates, session length.

A session beyond `server.max_sessions` is refused with HTTP 503 (WebSocket close 1013),
beyond `server.max_sessions_per_client` with HTTP 429 (close 1013), both with a reason and
Retry-After; running sessions are untouched. `POST /start` and the WebRTC offer routes are
rate-limited per client (token bucket, HTTP 429). A session ends after
`server.idle_timeout_secs` without audio from its client, or after `server.max_session_secs`.
Clients are told apart by address: behind a proxy they all share the proxy's.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Literal

from fastapi import HTTPException, WebSocket
from loguru import logger
from pipecat.frames.frames import InputAudioRawFrame
from pipecat.observers.base_observer import BaseObserver, FramePushed
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from voicebot.autotune import cpu_max_sessions
from voicebot.config import AUTO, Settings
from voicebot.observability.prometheus import VoicebotMetrics
from voicebot.protocol import ErrorEvent

# RFC 6455: "try again later".
CLOSE_TRY_AGAIN_LATER = 1013
# The bounded label values of voicebot_refusals.
RefusalReason = Literal[
    "unauthorized", "forbidden", "server_full", "client_full", "rate_limited", "models_loading"
]
EndReason = Literal["idle timeout", "session time limit"]

# Seconds a refused client is told to wait: sessions last minutes, so a short wait mostly
# finds the server still full; long enough that a retry loop does not hammer it.
FULL_RETRY_AFTER_SECS = 10
# Clients whose rate buckets are remembered; the least recently seen go first.
MAX_TRACKED_CLIENTS = 10_000
_RATE_LIMITED = re.compile(r"^/(start|api/offer|sessions/[^/]+/api/offer)$")


def max_sessions(settings: Settings) -> int:
    """`server.max_sessions`, with auto resolved from the CPU cores when autotune has not."""
    value = settings.server.max_sessions
    return cpu_max_sessions(os.cpu_count() or 1) if value == AUTO else value


class Refused(Exception):
    """A session or request the limits turn away: HTTP status, reason and Retry-After."""

    def __init__(self, status: int, reason: str, code: RefusalReason, retry_after_secs: int):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.code = code
        self.retry_after_secs = retry_after_secs

    def response(self) -> JSONResponse:
        return JSONResponse(
            {"detail": self.reason},
            self.status,
            headers={"Retry-After": str(self.retry_after_secs)},
        )


class SessionSlot:
    """One running session's place; `release()` (or leaving `async with`) frees it, once."""

    def __init__(self, limits: SessionLimits, client: str) -> None:
        self._limits = limits
        self.client = client
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._limits._release(self.client)

    async def __aenter__(self) -> SessionSlot:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


class SessionLimits:
    """Counts running sessions, overall and per client address."""

    def __init__(self, *, max_sessions: int, max_per_client: int) -> None:
        self.max_sessions = max_sessions
        self.max_per_client = max_per_client
        self._per_client: Counter[str] = Counter()

    @property
    def running(self) -> int:
        return sum(self._per_client.values())

    def acquire(self, client: str) -> SessionSlot:
        """A slot for a new session from `client`, or Refused (503 overall, 429 per client)."""
        if self.running >= self.max_sessions:
            raise Refused(
                503,
                f"server is at capacity ({self.max_sessions} sessions); retry later",
                "server_full",
                FULL_RETRY_AFTER_SECS,
            )
        if self.max_per_client and self._per_client[client] >= self.max_per_client:
            raise Refused(
                429,
                f"this client already runs {self.max_per_client} sessions, the most allowed",
                "client_full",
                FULL_RETRY_AFTER_SECS,
            )
        self._per_client[client] += 1
        return SessionSlot(self, client)

    def _release(self, client: str) -> None:
        self._per_client[client] -= 1
        if self._per_client[client] <= 0:
            del self._per_client[client]


class RateLimiter:
    """A token bucket per client: `burst` requests at once, refilled at `per_minute`."""

    def __init__(
        self,
        *,
        per_minute: float,
        burst: int,
        max_clients: int = MAX_TRACKED_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self._max_clients = max_clients
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, client: str) -> None:
        """Spend one request from `client`'s bucket, or raise Refused (429)."""
        now = self._clock()
        tokens, last = self._buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self._buckets[client] = (tokens, now)
            wait = math.ceil((1.0 - tokens) / self.rate)
            raise Refused(429, "too many requests; slow down", "rate_limited", wait)
        self._buckets[client] = (tokens - 1.0, now)
        while len(self._buckets) > self._max_clients:
            self._buckets.popitem(last=False)


class RateLimitMiddleware:
    """Answers 429 with Retry-After to a client posting /start or offers too fast."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        limiter: RateLimiter,
        on_refused: Callable[[RefusalReason], None] | None = None,
    ) -> None:
        self.app = app
        self.limiter = limiter
        self.on_refused = on_refused

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _RATE_LIMITED.match(scope["path"]):
            if scope.get("method") == "POST":
                client = scope.get("client")
                try:
                    self.limiter.take(client[0] if client else "")
                except Refused as e:
                    if self.on_refused is not None:
                        self.on_refused(e.code)
                    logger.bind(path=scope["path"], code=e.code).info("refused a request")
                    await e.response()(scope, receive, send)
                    return
        await self.app(scope, receive, send)


class SessionDeadlines(BaseObserver):
    """Ends a session (through `on_expire(reason)`) that has had no audio from its client
    for `idle_secs`, or that has run `max_secs`. Pass it as an observer and run the
    session inside `async with deadlines:`."""

    def __init__(
        self,
        *,
        idle_secs: float,
        max_secs: float,
        on_expire: Callable[[EndReason], Awaitable[None]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.idle_secs = idle_secs
        self.max_secs = max_secs
        self._on_expire = on_expire
        self._clock = clock
        self._started = clock()
        self._last_audio = self._started
        self._watch: asyncio.Task[None] | None = None
        self.expired: EndReason | None = None

    async def on_push_frame(self, data: FramePushed) -> None:
        if isinstance(data.frame, InputAudioRawFrame):
            self._last_audio = self._clock()

    async def __aenter__(self) -> SessionDeadlines:
        self._started = self._last_audio = self._clock()
        self._watch = asyncio.create_task(self._run(), name="session-deadlines")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            now = self._clock()
            idle_left = self._last_audio + self.idle_secs - now
            total_left = self._started + self.max_secs - now
            if total_left <= 0:
                reason: EndReason = "session time limit"
                break
            if idle_left <= 0:
                reason = "idle timeout"
                break
            await asyncio.sleep(min(idle_left, total_left) + 0.01)
        self.expired = reason
        logger.bind(reason=reason).info("ending session")
        await self._on_expire(reason)


class SessionGuard:
    """The server's session limits and deadlines, counted in /metrics."""

    def __init__(self, settings: Settings, metrics: VoicebotMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.limits = SessionLimits(
            max_sessions=max_sessions(settings),
            max_per_client=settings.server.max_sessions_per_client,
        )

    def acquire(self, client: str | None) -> SessionSlot:
        """A slot for a new session, or Refused (counted)."""
        try:
            return self.limits.acquire(client or "")
        except Refused as e:
            self.metrics.refusal(e.code)
            logger.bind(code=e.code, running=self.limits.running).info("refused a session")
            raise

    def http_slot(self, client: str | None) -> SessionSlot:
        """`acquire` for an HTTP route: a refusal becomes HTTPException with Retry-After."""
        try:
            return self.acquire(client)
        except Refused as e:
            raise HTTPException(
                e.status, e.reason, headers={"Retry-After": str(e.retry_after_secs)}
            ) from e

    async def websocket_slot(self, websocket: WebSocket) -> SessionSlot | None:
        """`acquire` for an accepted WebSocket: a refusal closes it with 1013 and the reason."""
        client = websocket.client.host if websocket.client else None
        try:
            return self.acquire(client)
        except Refused as e:
            await websocket.close(code=CLOSE_TRY_AGAIN_LATER, reason=e.reason)
            return None

    def deadlines(self, on_expire: Callable[[str], Awaitable[None]]) -> SessionDeadlines:
        """Deadlines for one session; `on_expire` gets the message for the client."""

        async def expire(reason: EndReason) -> None:
            self.metrics.session_ends.labels(reason=reason).inc()
            await on_expire(end_message(reason, self.settings))

        return SessionDeadlines(
            idle_secs=self.settings.server.idle_timeout_secs,
            max_secs=self.settings.server.max_session_secs,
            on_expire=expire,
        )


def end_error(message: str) -> ErrorEvent:
    """The protocol `error` event for a session the server ends (`idle_timeout`, ...)."""
    return ErrorEvent(code=message.split(":")[0].replace(" ", "_"), message=message)


def end_message(reason: EndReason, settings: Settings) -> str:
    """What the client is told when the server ends its session."""
    if reason == "idle timeout":
        return f"idle timeout: no audio for {settings.server.idle_timeout_secs:g} s"
    return f"session time limit: {settings.server.max_session_secs:g} s"
