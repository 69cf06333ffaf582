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

from voicebot.errors import ProtocolError
from voicebot.protocol import INPUT_SAMPLE_RATE
from voicebot.transports.flood import FloodGuard
from voicebot.transports.validated_ws import ValidatedInput, ValidatedWebsocketTransport

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


class _ValidatingInputTransport(ValidatedInput):
    """Audio and allowed RTVI messages go in; refused frames get an RTVI error back."""

    _owner: PipecatWebsocketTransport

    async def accept(self, message: str | bytes) -> bool:
        try:
            frame = parse_client_frame(message)
        except ProtocolError as e:
            self._owner.protocol_error(e.code)
            logger.bind(code=e.code).info("refused a pipecat websocket client frame")
            await self._owner.send_rtvi_error(e.message)
            return False
        if isinstance(frame, InputAudioRawFrame):
            await self.push_audio_frame(frame)
            return True
        # As Pipecat's own receive loop does: RTVI sits upstream of the transport input.
        await self.broadcast_frame(InputTransportMessageFrame, message=frame.message)
        return False


class PipecatWebsocketTransport(ValidatedWebsocketTransport):
    """A FastAPI WebSocket transport for one client of Pipecat's protobuf protocol."""

    def __init__(
        self,
        websocket: WebSocket,
        *,
        max_message_bytes: int,
        audio_out_sample_rate: int,
        on_protocol_error: Callable[[str], None] | None = None,
        flood: FloodGuard | None = None,
    ) -> None:
        self._serializer = ProtobufFrameSerializer()
        super().__init__(
            websocket,
            serializer=self._serializer,
            input_class=_ValidatingInputTransport,
            max_message_bytes=max_message_bytes,
            audio_out_sample_rate=audio_out_sample_rate,
            on_protocol_error=on_protocol_error,
            flood=flood,
        )

    async def send_rtvi_error(self, text: str) -> None:
        """Tell the client (in RTVI) that one of its messages was refused; not fatal."""
        error = {"label": MESSAGE_LABEL, "type": "error", "data": {"error": text, "fatal": False}}
        data = await self._serializer.serialize(OutputTransportMessageUrgentFrame(message=error))
        if data is not None:
            await self.send_raw(data)
