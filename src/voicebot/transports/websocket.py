"""Pipecat's FastAPI WebSocket transport speaking the voicebot protocol (see voicebot.protocol).

Client messages are validated before they become frames: a malformed message gets an
`error` event and is dropped, an oversized one closes that connection with 1009.
Nothing invalid reaches the pipeline, and other sessions are unaffected.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import WebSocket
from loguru import logger

from voicebot.errors import ProtocolError
from voicebot.protocol import (
    ErrorEvent,
    PingMessage,
    PongEvent,
    ProtocolSerializer,
    ServerEvent,
    encode_event,
    parse_audio,
    parse_control_message,
)
from voicebot.transports.flood import FloodGuard
from voicebot.transports.validated_ws import ValidatedInput, ValidatedWebsocketTransport


class _ProtocolInputTransport(ValidatedInput):
    """Binary messages are audio, text ones control messages; anything else gets an error event."""

    _owner: VoicebotWebsocketTransport

    async def accept(self, message: str | bytes) -> bool:
        try:
            if isinstance(message, bytes):
                await self.push_audio_frame(parse_audio(message))
                return True
            control = parse_control_message(message)
            if isinstance(control, PingMessage):
                await self._owner.send_event(PongEvent())
        except ProtocolError as e:
            self._owner.protocol_error(e.code)
            logger.bind(code=e.code).info("protocol error from client")
            await self._owner.send_event(ErrorEvent(code=e.code, message=e.message))
        return False


class VoicebotWebsocketTransport(ValidatedWebsocketTransport):
    """A FastAPI WebSocket transport for one client of the voicebot protocol."""

    def __init__(
        self,
        websocket: WebSocket,
        *,
        max_message_bytes: int,
        audio_out_sample_rate: int,
        session_timeout_secs: int | None = None,
        on_protocol_error: Callable[[str], None] | None = None,
        flood: FloodGuard | None = None,
    ) -> None:
        super().__init__(
            websocket,
            serializer=ProtocolSerializer(),
            input_class=_ProtocolInputTransport,
            max_message_bytes=max_message_bytes,
            audio_out_sample_rate=audio_out_sample_rate,
            session_timeout_secs=session_timeout_secs,
            on_protocol_error=on_protocol_error,
            flood=flood,
        )

    async def send_event(self, event: ServerEvent) -> None:
        """Send one JSON event to this client (a no-op once the socket is closing)."""
        await self.send_raw(encode_event(event))
