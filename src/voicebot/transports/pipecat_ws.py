"""Pipecat's own WebSocket protocol (protobuf frames + RTVI) for client-js, iOS and Android clients.

Client messages are checked before they become frames: only 16 kHz mono PCM16 audio and
RTVI messages of the types a voice client sends are let in. Frames a client could forge
(transcriptions, interruptions, text) get an RTVI `error` message back and never reach
the pipeline; an oversized message closes that connection with 1009.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pipecat.frames.protobufs.frames_pb2 as frame_protos
from fastapi import WebSocket
from google.protobuf.message import DecodeError
from loguru import logger
from pipecat.frames.frames import (
    InputAudioRawFrame,
    InputTransportMessageFrame,
    OutputTransportMessageUrgentFrame,
)
from pipecat.processors.frameworks.rtvi.models import MESSAGE_LABEL
from pipecat.serializers.protobuf import ProtobufFrameSerializer
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
from voicebot.protocol import INPUT_SAMPLE_RATE
from voicebot.transports.websocket import CLOSE_MESSAGE_TOO_BIG

# What a voice client sends over RTVI; the rest (function-call results, files, raw audio
# as JSON, UI events) has no use here and is refused like a forged frame.
ALLOWED_RTVI_TYPES = frozenset({"client-ready", "disconnect-bot", "send-text", "client-message"})

ClientFrame = InputAudioRawFrame | InputTransportMessageFrame


def parse_client_frame(data: str | bytes) -> ClientFrame:
    """One client message as the frame it may become; ProtocolError if it may not."""
    if isinstance(data, str):
        raise ProtocolError("not_binary", "send protobuf-encoded Pipecat frames as binary messages")
    try:
        proto = frame_protos.Frame.FromString(data)  # type: ignore[attr-defined]
    except DecodeError as e:
        raise ProtocolError("malformed", "message is not a protobuf-encoded Pipecat frame") from e
    kind = proto.WhichOneof("frame")
    if kind == "audio":
        return _audio(proto.audio)
    if kind == "message":
        return InputTransportMessageFrame(message=_rtvi_message(proto.message.data))
    raise ProtocolError(
        "forbidden_frame",
        f"{kind or 'empty'} frames from clients are not accepted; send audio or RTVI messages",
    )


def _audio(audio: Any) -> InputAudioRawFrame:
    if audio.sample_rate != INPUT_SAMPLE_RATE or audio.num_channels not in (0, 1):
        raise ProtocolError(
            "bad_audio",
            f"audio must be PCM16 mono at {INPUT_SAMPLE_RATE} Hz "
            f"(got {audio.sample_rate} Hz, {audio.num_channels} channels)",
        )
    if not audio.audio or len(audio.audio) % 2:
        raise ProtocolError("bad_audio", "audio must be a whole number of 16-bit samples")
    return InputAudioRawFrame(audio=audio.audio, sample_rate=INPUT_SAMPLE_RATE, num_channels=1)


def _rtvi_message(text: str) -> dict[str, Any]:
    try:
        message = json.loads(text)
    except ValueError as e:
        raise ProtocolError("malformed", "message frame data is not JSON") from e
    if not isinstance(message, dict) or message.get("label") != MESSAGE_LABEL:
        raise ProtocolError("not_rtvi", f"message frames must be RTVI messages ({MESSAGE_LABEL})")
    if message.get("type") not in ALLOWED_RTVI_TYPES:
        raise ProtocolError(
            "forbidden_message",
            f"RTVI message type {message.get('type')!r} is not accepted; "
            f"allowed: {', '.join(sorted(ALLOWED_RTVI_TYPES))}",
        )
    return message


class _ValidatingInputTransport(FastAPIWebsocketInputTransport):
    """Receives client frames, answering refused ones instead of passing them on."""

    def __init__(self, *, owner: PipecatWebsocketTransport, **kwargs: Any) -> None:
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
            logger.bind(error=repr(e)).info("pipecat websocket receive ended")
        if closed_by_us or not client.is_closing:
            await client.trigger_client_disconnected()

    async def _handle(self, message: str | bytes) -> bool:
        size = len(message) if isinstance(message, bytes) else len(message.encode())
        if size > self._owner.max_message_bytes:
            await self._owner.close_too_big(size)
            return False
        try:
            frame = parse_client_frame(message)
        except ProtocolError as e:
            self._owner.protocol_error(e.code)
            logger.bind(code=e.code).info("refused a pipecat websocket client frame")
            await self._owner.send_rtvi_error(e.message)
            return True
        if isinstance(frame, InputAudioRawFrame):
            await self.push_audio_frame(frame)
        else:
            # As Pipecat's own receive loop does: RTVI sits upstream of the transport input.
            await self.broadcast_frame(InputTransportMessageFrame, message=frame.message)
        return True


class PipecatWebsocketTransport(FastAPIWebsocketTransport):
    """A FastAPI WebSocket transport for one client of Pipecat's protobuf protocol."""

    def __init__(
        self,
        websocket: WebSocket,
        *,
        max_message_bytes: int,
        audio_out_sample_rate: int,
        on_protocol_error: Callable[[str], None] | None = None,
    ) -> None:
        self._serializer = ProtobufFrameSerializer()
        params = FastAPIWebsocketParams(
            audio_in_enabled=True,
            audio_in_sample_rate=INPUT_SAMPLE_RATE,
            audio_out_enabled=True,
            audio_out_sample_rate=audio_out_sample_rate,
            serializer=self._serializer,
            # Origins are checked before accept() (server/origins.py), not by Pipecat,
            # whose PIPECAT_ALLOWED_ORIGINS check runs after it and closes with 1006.
            allowed_origins=[],
        )
        super().__init__(websocket, params)
        self._websocket = websocket
        self.max_message_bytes = max_message_bytes
        self._on_protocol_error = on_protocol_error
        replace_websocket_input(
            self, lambda **parts: _ValidatingInputTransport(owner=self, **parts)
        )

    def protocol_error(self, code: str) -> None:
        """Count one refused client message (for /metrics)."""
        if self._on_protocol_error is not None:
            self._on_protocol_error(code)

    async def send_rtvi_error(self, text: str) -> None:
        """Tell the client (in RTVI) that one of its messages was refused; not fatal."""
        error = {"label": MESSAGE_LABEL, "type": "error", "data": {"error": text, "fatal": False}}
        data = await self._serializer.serialize(OutputTransportMessageUrgentFrame(message=error))
        if data is not None:
            await websocket_client(self.input()).send(data)

    async def close_too_big(self, size: int) -> None:
        self.protocol_error("message_too_big")
        reason = f"message of {size} bytes exceeds the {self.max_message_bytes}-byte limit"
        logger.bind(code="message_too_big", size=size).info(
            "refused a pipecat websocket client frame"
        )
        mark_websocket_closing(websocket_client(self.input()))
        try:
            await self._websocket.close(code=CLOSE_MESSAGE_TOO_BIG, reason=reason)
        except RuntimeError:  # already closed by the peer
            pass
