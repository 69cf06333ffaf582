"""SmallWebRTC for browsers: the offer/ICE routes our page and Pipecat's prebuilt client call.

A browser first POSTs `/start` (voicebot.server.start) for a session id (503 while models
load), then sends its SDP offer to `/sessions/{id}/api/offer`. Plain `/api/offer` works
too, for clients that skip `/start`. Each accepted offer runs one conversation in the
background. An offer whose peer has not connected within
`server.webrtc_connect_timeout_secs` is hung up (aiortc holds UDP sockets for it), and at
most `server.max_pending_webrtc_offers` wait at a time. Besides RTVI (for Pipecat
clients), the data channel carries our protocol's JSON events, so a browser page gets
the same events over WebRTC as over `/ws`.

aiortc (with its ICE, DTLS and SRTP stacks), which SmallWebRTC runs on, takes long to
import and most servers never see an offer: it is imported, off the event loop, when the
first offer arrives.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, HTTPException, Request
from loguru import logger
from pipecat.transports.base_transport import TransportParams

from voicebot.config import Settings
from voicebot.models import SharedModels
from voicebot.observability.events import ProtocolEventObserver
from voicebot.observability.metrics_observer import SessionMetrics
from voicebot.protocol import INPUT_SAMPLE_RATE, ReadyEvent, ServerEvent
from voicebot.providers.tts.stage import output_sample_rate
from voicebot.server.drain import Drain
from voicebot.session import run_session

if TYPE_CHECKING:
    from pipecat.transports.smallwebrtc import request_handler as pipecat_webrtc
    from pipecat.transports.smallwebrtc.connection import SmallWebRTCConnection
    from pipecat.transports.smallwebrtc.transport import SmallWebRTCTransport

    from voicebot.server.limits import SessionGuard  # the server package imports this module

ModelsGetter = Callable[[], SharedModels | None]

# A browser sends its offer right after `/start`; an id unused for 5 minutes is stale.
STARTED_SESSION_TTL_SECS = 300.0
# Far more than one server has sessions for; only a flood of `/start` posts reaches it.
MAX_STARTED_SESSIONS = 10_000


# The offer routes' bodies: field for field Pipecat's dataclasses of the same names in
# pipecat.transports.smallwebrtc.request_handler (tests/test_startup_imports.py compares
# them), declared here because importing Pipecat's module imports aiortc.
@dataclass
class SmallWebRTCRequest:
    sdp: str
    type: str
    pc_id: str | None = None
    restart_pc: bool | None = None
    request_data: Any | None = None


@dataclass
class IceCandidate:
    candidate: str
    sdp_mid: str
    sdp_mline_index: int


@dataclass
class SmallWebRTCPatchRequest:
    pc_id: str
    candidates: list[IceCandidate]


@dataclass(frozen=True)
class SmallWebRTC:
    """Pipecat's SmallWebRTC classes, imported on first use (they import aiortc)."""

    handler: pipecat_webrtc.SmallWebRTCRequestHandler
    transport: type[SmallWebRTCTransport]

    @staticmethod
    def load() -> SmallWebRTC:
        from pipecat.transports.smallwebrtc.request_handler import SmallWebRTCRequestHandler
        from pipecat.transports.smallwebrtc.transport import SmallWebRTCTransport

        return SmallWebRTC(SmallWebRTCRequestHandler(), SmallWebRTCTransport)

    def offer(self, offer: SmallWebRTCRequest) -> pipecat_webrtc.SmallWebRTCRequest:
        from pipecat.transports.smallwebrtc.request_handler import SmallWebRTCRequest

        return SmallWebRTCRequest(**dataclasses.asdict(offer))

    def patch(self, patch: SmallWebRTCPatchRequest) -> pipecat_webrtc.SmallWebRTCPatchRequest:
        from pipecat.transports.smallwebrtc.request_handler import (
            IceCandidate,
            SmallWebRTCPatchRequest,
        )

        candidates = [IceCandidate(**dataclasses.asdict(c)) for c in patch.candidates]
        return SmallWebRTCPatchRequest(pc_id=patch.pc_id, candidates=candidates)


class StartedSessions:
    """Session ids handed out by `/start`, each valid for `ttl_secs` and at most `max_ids` kept.

    `/start` is open to anyone, so ids must not pile up: expired ones are dropped as new ones
    arrive, and past the cap the oldest goes first.
    """

    def __init__(
        self,
        *,
        ttl_secs: float = STARTED_SESSION_TTL_SECS,
        max_ids: int = MAX_STARTED_SESSIONS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_secs = ttl_secs
        self.max_ids = max_ids
        self.clock = clock
        self._issued: OrderedDict[str, float] = OrderedDict()

    def add(self, session_id: str) -> None:
        self._prune()
        self._issued[session_id] = self.clock()
        while len(self._issued) > self.max_ids:
            self._issued.popitem(last=False)

    def __contains__(self, session_id: object) -> bool:
        issued = self._issued.get(session_id) if isinstance(session_id, str) else None
        return issued is not None and self.clock() - issued < self.ttl_secs

    def __len__(self) -> int:
        return len(self._issued)

    def _prune(self) -> None:
        # Ids are kept in the order they were issued, so the expired ones are at the front.
        deadline = self.clock() - self.ttl_secs
        while self._issued and next(iter(self._issued.values())) <= deadline:
            self._issued.popitem(last=False)


class WebRTCRoutes:
    """Routes for SmallWebRTC sessions (`.router`); sessions start only once models are warm."""

    def __init__(
        self,
        get_models: ModelsGetter,
        settings: Settings,
        *,
        guard: SessionGuard,
        metrics: SessionMetrics | None = None,
        drain: Drain | None = None,
    ) -> None:
        self.metrics = metrics
        self.guard = guard
        self.drain = drain or Drain()
        self._webrtc: SmallWebRTC | None = None
        self.sessions: set[asyncio.Task[None]] = set()
        # Offers answered within the connect timeout, each with its watchdog.
        self.pending: dict[SmallWebRTCConnection, asyncio.Task[None]] = {}
        self.connect_timeout_secs = settings.server.webrtc_connect_timeout_secs
        self.max_pending = settings.server.max_pending_webrtc_offers
        self.started = StartedSessions()
        self.get_models = get_models
        self.router = _build_router(self, get_models, settings)

    async def smallwebrtc(self) -> SmallWebRTC:
        """Pipecat's SmallWebRTC, imported in a thread on first use so sessions keep their audio."""
        if self._webrtc is None:
            loaded = await asyncio.to_thread(SmallWebRTC.load)
            if self._webrtc is None:  # another offer may have loaded it meanwhile
                self._webrtc = loaded
        return self._webrtc

    def ready_models(self) -> SharedModels:
        """The warm models, or HTTP 503 with Retry-After while loading or draining."""
        if self.drain.draining:
            raise HTTPException(
                status_code=503,
                detail="the server is restarting; connect again in a few seconds",
                headers={"Retry-After": "5"},
            )
        models = self.get_models()
        if models is None:
            raise HTTPException(
                status_code=503,
                detail="models are still loading; retry shortly",
                headers={"Retry-After": "2"},
            )
        return models

    def register_session(self) -> str:
        """A session id for `/sessions/{id}/api/offer` (what `/start` hands a WebRTC client)."""
        session_id = str(uuid.uuid4())
        self.started.add(session_id)
        return session_id

    def admit_offer(self) -> None:
        """HTTP 503 while `max_pending` offers are still waiting for their peers to connect."""
        waiting = sum(not c.is_connected() for c in self.pending)
        if waiting >= self.max_pending:
            logger.bind(waiting=waiting).info("refusing a webrtc offer: too many pending")
            raise HTTPException(
                status_code=503,
                detail=f"{waiting} WebRTC offers are waiting for their peers to connect; "
                "retry shortly",
                headers={"Retry-After": "5"},
            )

    def watch_connect(self, connection: SmallWebRTCConnection) -> None:
        """Hang up `connection` if its peer has not connected within the connect timeout."""

        async def watchdog() -> None:
            try:
                await asyncio.sleep(self.connect_timeout_secs)
                if not connection.is_connected():
                    logger.bind(pc_id=connection.pc_id).info("webrtc peer never connected")
                    await connection.disconnect()
            finally:
                self.pending.pop(connection, None)

        self.pending[connection] = asyncio.create_task(watchdog())

    async def close(self) -> None:
        """Hang up every peer connection and end their sessions (server shutdown)."""
        for watchdog in list(self.pending.values()):
            watchdog.cancel()
        if self._webrtc is not None:
            await self._webrtc.handler.close()
        for task in list(self.sessions):
            task.cancel()
        logger.info("webrtc connections closed")


def _build_router(owner: WebRTCRoutes, get_models: ModelsGetter, settings: Settings) -> APIRouter:
    router = APIRouter()
    sessions = owner.sessions
    started = owner.started
    ready_models = owner.ready_models

    async def answer(
        offer: SmallWebRTCRequest, session_id: str, request: Request
    ) -> dict[str, str]:
        webrtc = await owner.smallwebrtc()
        models = ready_models()
        if offer.pc_id is None:  # a new peer, not a renegotiation
            owner.admit_offer()
        # Held by the session a new peer connection starts; a renegotiation gives it back.
        slot = owner.guard.http_slot(request.client.host if request.client else None)
        claimed = False

        async def start(connection: SmallWebRTCConnection) -> None:
            nonlocal claimed
            claimed = True

            async def send_event(event: ServerEvent) -> None:
                # Queued by the connection until the data channel opens.
                connection.send_app_message(event.model_dump(exclude_none=True))

            sample_rate = output_sample_rate(settings, models)
            await send_event(ReadyEvent(session_id=session_id, sample_rate=sample_rate))
            transport = webrtc.transport(
                webrtc_connection=connection,
                params=TransportParams(
                    audio_in_enabled=True,
                    audio_in_sample_rate=INPUT_SAMPLE_RATE,
                    audio_out_enabled=True,
                    audio_out_sample_rate=sample_rate,
                ),
            )

            async def end(reason: str) -> None:
                from voicebot.server.limits import end_error

                await send_event(end_error(reason))
                await connection.disconnect()

            async def guarded() -> None:
                async with slot, owner.guard.deadlines(end) as deadlines:
                    with owner.drain.track(close=connection.disconnect) as activity:
                        # The prebuilt client speaks RTVI over the data channel: RTVI stays on.
                        await run_session(
                            transport,
                            models,
                            settings,
                            session_id=session_id,
                            observers=[
                                ProtocolEventObserver(sink=send_event),
                                deadlines,
                                activity,
                            ],
                            enable_rtvi=True,
                            metrics=owner.metrics,
                        )

            owner.watch_connect(connection)
            task = asyncio.create_task(guarded())
            sessions.add(task)
            task.add_done_callback(sessions.discard)
            # Also when the task is cancelled before it ever runs (shutdown).
            task.add_done_callback(lambda _task: slot.release())

        try:
            result = await webrtc.handler.handle_web_request(
                request=webrtc.offer(offer), webrtc_connection_callback=start
            )
        finally:
            if not claimed:
                slot.release()
        if result is None:
            raise HTTPException(status_code=500, detail="WebRTC connection produced no answer")
        return result

    @router.post("/api/offer")
    async def offer(offer: SmallWebRTCRequest, request: Request) -> dict[str, str]:
        return await answer(offer, str(uuid.uuid4()), request)

    @router.patch("/api/offer")
    async def ice_candidates(request: SmallWebRTCPatchRequest) -> dict[str, str]:
        webrtc = await owner.smallwebrtc()
        await webrtc.handler.handle_patch_request(webrtc.patch(request))
        return {"status": "success"}

    @router.post("/sessions/{session_id}/api/offer")
    async def session_offer(session_id: str, request: Request) -> dict[str, str]:
        if session_id not in started:
            raise HTTPException(status_code=404, detail="unknown session id; POST /start first")
        data = await json_body(request)
        try:
            offer_request = SmallWebRTCRequest(
                sdp=data["sdp"],
                type=data["type"],
                pc_id=data.get("pc_id"),
                restart_pc=data.get("restart_pc"),
            )
        except KeyError as e:
            raise HTTPException(status_code=400, detail=f"offer is missing field {e}") from e
        return await answer(offer_request, session_id, request)

    @router.patch("/sessions/{session_id}/api/offer")
    async def session_ice(session_id: str, request: Request) -> dict[str, str]:
        data = await json_body(request)
        try:
            patch = SmallWebRTCPatchRequest(
                pc_id=data["pc_id"],
                candidates=[IceCandidate(**c) for c in data.get("candidates", [])],
            )
        except (KeyError, TypeError) as e:
            raise HTTPException(
                status_code=400, detail=f"invalid ICE candidate request: {e}"
            ) from e
        webrtc = await owner.smallwebrtc()
        await webrtc.handler.handle_patch_request(webrtc.patch(patch))
        return {"status": "success"}

    return router


async def json_body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError as e:
        raise HTTPException(status_code=400, detail="request body is not valid JSON") from e
    if not isinstance(body, dict):
        raise HTTPException(status_code=400, detail="request body must be a JSON object")
    return body
