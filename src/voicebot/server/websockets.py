"""`/ws` (our JSON protocol) and `/ws-client` (Pipecat's protobuf + RTVI): one session each."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from fastapi import APIRouter, WebSocket
from pipecat.observers.base_observer import BaseObserver

from voicebot.config import Settings
from voicebot.models import SharedModels
from voicebot.observability.events import ProtocolEventObserver
from voicebot.observability.metrics_observer import SessionMetrics
from voicebot.observability.prometheus import VoicebotMetrics
from voicebot.protocol import ErrorEvent, ReadyEvent, encode_event
from voicebot.providers.tts.stage import output_sample_rate
from voicebot.server.auth import session_id_from
from voicebot.server.limits import SessionGuard, SessionSlot, end_error
from voicebot.server.origins import refuse_foreign_origin
from voicebot.server.start import PIPECAT_WS_PATH
from voicebot.server.state import ModelState
from voicebot.session import run_session
from voicebot.transports.flood import FloodGuard
from voicebot.transports.pipecat_ws import PipecatWebsocketTransport
from voicebot.transports.validated_ws import ValidatedWebsocketTransport
from voicebot.transports.websocket import VoicebotWebsocketTransport

# RFC 6455: "try again later", for clients that connect while models are loading.
CLOSE_TRY_AGAIN_LATER = 1013
# RFC 6455: "normal closure", for sessions the server ends (idle, time limit).
CLOSE_NORMAL = 1000
DRAINING_MESSAGE = "the server is restarting; connect again in a few seconds"


def websocket_router(
    state: ModelState, settings: Settings, metrics: VoicebotMetrics, guard: SessionGuard
) -> APIRouter:
    router = APIRouter()

    async def serve(
        transport: ValidatedWebsocketTransport,
        shared: SharedModels,
        slot: SessionSlot,
        end: Callable[[str], Awaitable[None]],
        *,
        observers: Sequence[BaseObserver] = (),
        **session: Any,
    ) -> None:
        """Run one session in its slot, under its idle/time limits, tracked for the drain."""
        async with slot, guard.deadlines(end) as deadlines:
            with state.drain.track(close=transport.close_going_away) as activity:
                await run_session(
                    transport,
                    shared,
                    settings,
                    observers=[*observers, deadlines, activity],
                    **session,
                )

    @router.websocket("/ws")
    async def ws_session(websocket: WebSocket) -> None:
        if await refuse_foreign_origin(websocket, settings.server.allowed_origins):
            return
        await websocket.accept()
        shared = state.models
        if state.drain.draining:
            draining = ErrorEvent(code="draining", message=DRAINING_MESSAGE)
            await websocket.send_text(encode_event(draining))
            await websocket.close(code=CLOSE_TRY_AGAIN_LATER, reason="server draining")
            return
        if shared is None:
            not_ready = ErrorEvent(
                code="not_ready", message="models are still loading; retry when /health is 200"
            )
            await websocket.send_text(encode_event(not_ready))
            await websocket.close(code=CLOSE_TRY_AGAIN_LATER, reason="models loading")
            return
        slot = await guard.websocket_slot(websocket)
        if slot is None:
            return
        session_id = session_id_from(websocket.state) or uuid.uuid4().hex[:12]
        transport = VoicebotWebsocketTransport(
            websocket,
            max_message_bytes=settings.server.max_message_bytes,
            audio_out_sample_rate=output_sample_rate(settings, shared),
            on_protocol_error=metrics.protocol_error,
            flood=FloodGuard.for_server(settings.server),
        )
        ready = ReadyEvent(sample_rate=output_sample_rate(settings, shared), session_id=session_id)
        await websocket.send_text(encode_event(ready))
        observer = ProtocolEventObserver(sink=transport.send_event)

        async def end(reason: str) -> None:
            await transport.send_event(end_error(reason))
            await transport.end_session(CLOSE_NORMAL, reason)

        await serve(
            transport,
            shared,
            slot,
            end,
            session_id=session_id,
            observers=[observer],
            metrics=SessionMetrics(metrics, "ws"),
        )

    @router.websocket(PIPECAT_WS_PATH)
    async def pipecat_ws_session(websocket: WebSocket) -> None:
        if await refuse_foreign_origin(websocket, settings.server.allowed_origins):
            return
        await websocket.accept()
        shared = state.models
        if state.drain.draining:
            await websocket.close(code=CLOSE_TRY_AGAIN_LATER, reason="server draining")
            return
        if shared is None:
            await websocket.close(code=CLOSE_TRY_AGAIN_LATER, reason="models loading")
            return
        slot = await guard.websocket_slot(websocket)
        if slot is None:
            return
        transport = PipecatWebsocketTransport(
            websocket,
            max_message_bytes=settings.server.max_message_bytes,
            audio_out_sample_rate=output_sample_rate(settings, shared),
            on_protocol_error=metrics.protocol_error,
            flood=FloodGuard.for_server(settings.server),
        )

        # Pipecat's clients speak RTVI: client-ready -> bot-ready, transcripts, bot text.
        async def end(reason: str) -> None:
            await transport.end_session(CLOSE_NORMAL, reason)

        await serve(
            transport,
            shared,
            slot,
            end,
            session_id=session_id_from(websocket.state),
            enable_rtvi=True,
            metrics=SessionMetrics(metrics, "ws_client"),
        )

    return router
