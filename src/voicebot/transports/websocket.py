"""Pipecat's FastAPI WebSocket transport speaking the voicebot protocol (see voicebot.protocol).

Client messages are validated before they become frames: a malformed message gets an
`error` event and is dropped, an oversized one closes that connection with 1009.
Nothing invalid reaches the pipeline, and other sessions are unaffected.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import WebSocket
from loguru import logger
from pipecat.transports.websocket.fastapi import (
    FastAPIWebsocketInputTransport,
    FastAPIWebsocketParams,
    FastAPIWebsocketTransport,
)

from voicebot.errors import ProtocolError
from voicebot.pipecat_compat import (
    mark_websocket_closing,
    replace_websocket_input,
    websocket_client,
)
from voicebot.protocol import (
    INPUT_SAMPLE_RATE,
    ErrorEvent,
    PingMessage,
    PongEvent,
    ProtocolSerializer,
    ServerEvent,
    encode_event,
    parse_audio,
    parse_control_message,
)

# RFC 6455: "message too big".
CLOSE_MESSAGE_TOO_BIG = 1009


class _ProtocolInputTransport(FastAPIWebsocketInputTransport):
    """Receives client messages, answering protocol errors instead of passing them on."""

    def __init__(self, *, owner: VoicebotWebsocketTransport, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._owner = owner

    async def _receive_messages(self) -> None:
        client = websocket_client(self)
        closed_by_us = False
        try:
            async for message in client.receive():
                if not await self._handle(message):
                    closed_by_us = True
                    break
        except Exception as e:  # a dropped socket surfaces here; the session just ends
            logger.bind(error=repr(e)).info("websocket receive ended")
        if closed_by_us or not client.is_closing:
            await client.trigger_client_disconnected()

    async def _handle(self, message: str | bytes) -> bool:
        """Route one client message; returns False once the connection has been closed."""
        size = len(message) if isinstance(message, bytes) else len(message.encode())
        if size > self._owner.max_message_bytes:
            await self._owner.close_too_big(size)
            return False
        try:
            if isinstance(message, bytes):
                await self.push_audio_frame(parse_audio(message))
            else:
                control = parse_control_message(message)
                if isinstance(control, PingMessage):
                    await self._owner.send_event(PongEvent())
        except ProtocolError as e:
            self._owner.protocol_error(e.code)
            logger.bind(code=e.code).info("protocol error from client")
            await self._owner.send_event(ErrorEvent(code=e.code, message=e.message))
        return True


class VoicebotWebsocketTransport(FastAPIWebsocketTransport):
    """A FastAPI WebSocket transport for one client of the voicebot protocol."""

    def __init__(
        self,
        websocket: WebSocket,
        *,
        max_message_bytes: int,
        audio_out_sample_rate: int,
        session_timeout_secs: int | None = None,
        on_protocol_error: Callable[[str], None] | None = None,
    ) -> None:
        params = FastAPIWebsocketParams(
            audio_in_enabled=True,
            audio_in_sample_rate=INPUT_SAMPLE_RATE,
            audio_out_enabled=True,
            audio_out_sample_rate=audio_out_sample_rate,
            serializer=ProtocolSerializer(),
            session_timeout=session_timeout_secs,
            # Origins are checked before accept() (server/origins.py), not by Pipecat,
            # whose PIPECAT_ALLOWED_ORIGINS check runs after it and closes with 1006.
            allowed_origins=[],
        )
        super().__init__(websocket, params)
        self._websocket = websocket
        self.max_message_bytes = max_message_bytes
        self._on_protocol_error = on_protocol_error
        replace_websocket_input(self, lambda **parts: _ProtocolInputTransport(owner=self, **parts))

    def protocol_error(self, code: str) -> None:
        """Count one refused client message (for /metrics)."""
        if self._on_protocol_error is not None:
            self._on_protocol_error(code)

    async def send_event(self, event: ServerEvent) -> None:
        """Send one JSON event to this client (a no-op once the socket is closing)."""
        await websocket_client(self.input()).send(encode_event(event))

    async def close_too_big(self, size: int) -> None:
        self.protocol_error("message_too_big")
        reason = f"message of {size} bytes exceeds the {self.max_message_bytes}-byte limit"
        logger.bind(code="message_too_big", size=size).info("protocol error from client")
        mark_websocket_closing(websocket_client(self.input()))
        try:
            await self._websocket.close(code=CLOSE_MESSAGE_TOO_BIG, reason=reason)
        except RuntimeError:  # already closed by the peer
            pass
