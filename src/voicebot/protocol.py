"""The voicebot WebSocket protocol: what a client may send and what the server sends back.

Client -> server
    binary  PCM16LE mono audio at 16 kHz (any whole number of samples; 20 ms = 640 bytes)
    text    JSON control message: {"type": "ping"}  (answered with {"type": "pong"})
Server -> client
    text    {"type": "ready", "sample_rate": N, ...}       always the first message
    binary  PCM16LE mono bot audio at N Hz
    text    JSON events: transcript, bot_text, bot_started_speaking, bot_stopped_speaking,
            metrics, error, pong
"""

from __future__ import annotations

import json
from typing import Any

from pipecat.frames.frames import (
    Frame,
    InputAudioRawFrame,
    OutputAudioRawFrame,
    OutputTransportMessageFrame,
    OutputTransportMessageUrgentFrame,
)
from pipecat.serializers.base_serializer import FrameSerializer

from voicebot.errors import ProtocolError

PROTOCOL_VERSION = 1
INPUT_SAMPLE_RATE = 16000
CLIENT_MESSAGE_TYPES = ("ping",)
EVENT_TYPES = frozenset(
    {
        "ready",
        "transcript",
        "bot_text",
        "bot_started_speaking",
        "bot_stopped_speaking",
        "metrics",
        "error",
        "pong",
    }
)


def ready_event(*, sample_rate: int, session_id: str) -> dict[str, Any]:
    return {
        "type": "ready",
        "protocol": PROTOCOL_VERSION,
        "session_id": session_id,
        "sample_rate": sample_rate,
        "input_sample_rate": INPUT_SAMPLE_RATE,
        "encoding": "pcm_s16le",
        "channels": 1,
    }


def error_event(code: str, message: str) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message}


def parse_control_message(text: str) -> dict[str, Any]:
    """Validate a JSON text message from a client; raises ProtocolError naming the problem."""
    try:
        message = json.loads(text)
    except json.JSONDecodeError as e:
        raise ProtocolError(
            "invalid_json", f"text message is not valid JSON ({e.msg} at position {e.pos})"
        ) from e
    if not isinstance(message, dict):
        raise ProtocolError(
            "invalid_message",
            f"a control message must be a JSON object, not {type(message).__name__}",
        )
    kind = message.get("type")
    if kind not in CLIENT_MESSAGE_TYPES:
        allowed = ", ".join(CLIENT_MESSAGE_TYPES)
        raise ProtocolError(
            "unknown_message_type",
            f"unknown control message type {kind!r}; allowed types: {allowed} "
            "(audio goes in binary messages)",
        )
    return message


def parse_audio(data: bytes) -> InputAudioRawFrame:
    """Wrap a binary message as an input audio frame; raises ProtocolError if it can't be PCM16."""
    if len(data) == 0:
        raise ProtocolError("empty_audio", "binary message is empty; send PCM16LE audio samples")
    if len(data) % 2:
        raise ProtocolError(
            "invalid_audio",
            f"binary message of {len(data)} bytes is not whole 16-bit samples; "
            "send PCM16LE mono at 16 kHz (an even number of bytes)",
        )
    return InputAudioRawFrame(audio=data, sample_rate=INPUT_SAMPLE_RATE, num_channels=1)


class ProtocolSerializer(FrameSerializer):
    """Frames <-> WebSocket messages for the voicebot protocol.

    Outgoing: bot audio becomes binary PCM; transport messages whose payload is one of
    our events become JSON text; everything else (RTVI chatter included) is not sent.
    Incoming: binary becomes an `InputAudioRawFrame`; text must be a control message.
    """

    async def serialize(self, frame: Frame) -> str | bytes | None:
        if isinstance(frame, OutputAudioRawFrame):
            return frame.audio
        if isinstance(frame, (OutputTransportMessageFrame, OutputTransportMessageUrgentFrame)):
            message = frame.message
            if isinstance(message, dict) and message.get("type") in EVENT_TYPES:
                return json.dumps(message)
        return None

    async def deserialize(self, data: str | bytes) -> Frame | None:
        if isinstance(data, bytes):
            return parse_audio(data)
        parse_control_message(data)
        return None
