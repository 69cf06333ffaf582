"""What our two WebSocket transports share: every client message is checked before it is used.

Pipecat's FastAPI transport turns whatever a client sends into frames. Here the input side
is replaced: a message larger than `max_message_bytes` closes that connection with 1009
and a reason; every other message goes to the subclass's `accept`, which refuses what
its protocol does not allow (with an answer to the client, counted for /metrics).
Flood control (transports/flood.py) runs in the same loop: audio faster than real time
or a flood of other messages closes with 1008. Nothing invalid reaches the pipeline,
and other sessions are unaffected.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import WebSocket
from loguru import logger
from pipecat.frames.frames import InputAudioRawFrame
from pipecat.serializers.base_serializer import FrameSerializer
from pipecat.transports.websocket.fastapi import (
    FastAPIWebsocketInputTransport,
    FastAPIWebsocketParams,
    FastAPIWebsocketTransport,
)

from voicebot.pipecat_compat import (
    mark_websocket_closing,
    replace_websocket_input,
    websocket_client,
)
from voicebot.protocol import INPUT_SAMPLE_RATE
from voicebot.transports.flood import CLOSE_POLICY_VIOLATION, FloodGuard

# RFC 6455: "message too big".
CLOSE_MESSAGE_TOO_BIG = 1009
# RFC 6455: "going away", for a server that is shutting down.
CLOSE_GOING_AWAY = 1001


class ValidatedInput(FastAPIWebsocketInputTransport):
    """Receives client messages; subclasses decide in `accept` what each one becomes."""

    def __init__(self, *, owner: ValidatedWebsocketTransport, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._owner = owner

    async def accept(self, message: str | bytes) -> bool:
        """Turn one client message into frames, or refuse it with an answer to the client.

        Returns whether it was caller audio (handed to `push_audio_frame`): flood control
        counts everything else as a message.
        """
        raise NotImplementedError

    async def push_audio_frame(self, frame: InputAudioRawFrame) -> None:
        """Push client audio on, unless it arrives faster than real time (then close 1008)."""
        guard = self._owner.flood
        if guard is not None:
            seconds = len(frame.audio) / (2 * frame.sample_rate * max(frame.num_channels, 1))
            reason = guard.audio_received(seconds)
            if reason is not None:
                await self._owner.close_policy_violation("audio_too_fast", reason)
                return
        await super().push_audio_frame(frame)

    async def _receive_messages(self) -> None:
        client = websocket_client(self)
        owner = self._owner
        try:
            async for message in client.receive():
                size = len(message) if isinstance(message, bytes) else len(message.encode())
                if size > owner.max_message_bytes:
                    await owner.close_too_big(size)
                    break
                audio = await self.accept(message)
                if owner.closed_by_server:
                    break
                # Everything but accepted audio (pings, RTVI, refused messages) is a message.
                if audio or owner.flood is None:
                    continue
                reason = owner.flood.message_received()
                if reason is not None:
                    await owner.close_policy_violation("too_many_messages", reason)
                    break
        except Exception as e:  # a dropped socket surfaces here; the session just ends
            logger.bind(error=repr(e)).info("websocket receive ended")
        if owner.closed_by_server or not client.is_closing:
            await client.trigger_client_disconnected()


class ValidatedWebsocketTransport(FastAPIWebsocketTransport):
    """Pipecat's FastAPI WebSocket transport with `input_class` checking what clients send."""

    def __init__(
        self,
        websocket: WebSocket,
        *,
        serializer: FrameSerializer,
        input_class: type[ValidatedInput],
        max_message_bytes: int,
        audio_out_sample_rate: int,
        session_timeout_secs: int | None = None,
        on_protocol_error: Callable[[str], None] | None = None,
        flood: FloodGuard | None = None,
    ) -> None:
        params = FastAPIWebsocketParams(
            audio_in_enabled=True,
            audio_in_sample_rate=INPUT_SAMPLE_RATE,
            audio_out_enabled=True,
            audio_out_sample_rate=audio_out_sample_rate,
            serializer=serializer,
            session_timeout=session_timeout_secs,
            # Origins are checked before accept() (server/origins.py), not by Pipecat,
            # whose PIPECAT_ALLOWED_ORIGINS check runs after it and closes with 1006.
            allowed_origins=[],
        )
        super().__init__(websocket, params)
        self._websocket = websocket
        self.max_message_bytes = max_message_bytes
        self._on_protocol_error = on_protocol_error
        self.flood = flood
        # Set once the server closes the socket itself (1008, 1009, 1001 on shutdown).
        self.closed_by_server = False
        replace_websocket_input(self, lambda **parts: input_class(owner=self, **parts))

    def protocol_error(self, code: str) -> None:
        """Count one refused client message (for /metrics)."""
        if self._on_protocol_error is not None:
            self._on_protocol_error(code)

    async def send_raw(self, data: str | bytes) -> None:
        """Send one message to this client (a no-op once the socket is closing)."""
        await websocket_client(self.input()).send(data)

    async def end_session(self, code: int, reason: str) -> None:
        """Close this client's socket with `code` and `reason`; the session then ends."""
        client = websocket_client(self.input())
        if client.is_closing:
            return
        mark_websocket_closing(client)
        try:
            await self._websocket.close(code=code, reason=reason)
        except RuntimeError:  # already closed by the peer
            pass
        await client.trigger_client_disconnected()

    async def close_too_big(self, size: int) -> None:
        self.protocol_error("message_too_big")
        reason = f"message of {size} bytes exceeds the {self.max_message_bytes}-byte limit"
        logger.bind(code="message_too_big", size=size).info("protocol error from client")
        await self.close_with(CLOSE_MESSAGE_TOO_BIG, reason)

    async def close_policy_violation(self, code: str, reason: str) -> None:
        """Close a flooding client with 1008 and `reason`; counted and logged once."""
        if self.closed_by_server:
            return
        self.protocol_error(code)
        logger.bind(code=code, reason=reason).info("closing a flooding client")
        await self.close_with(CLOSE_POLICY_VIOLATION, reason)

    async def close_going_away(self) -> None:
        """Close with 1001 "server restarting" (the end of a graceful drain)."""
        await self.close_with(CLOSE_GOING_AWAY, "server restarting")

    async def close_with(self, code: int, reason: str) -> None:
        """Close this client's socket with `code` and `reason`; the session then ends."""
        if self.closed_by_server:
            return
        self.closed_by_server = True
        mark_websocket_closing(websocket_client(self.input()))
        try:
            await self._websocket.close(code=code, reason=reason)
        except RuntimeError:  # already closed by the peer
            pass
