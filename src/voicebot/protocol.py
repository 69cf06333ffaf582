"""The voicebot WebSocket protocol: what a client may send and what the server sends back.

Client -> server
    binary  PCM16LE mono audio at 16 kHz (any whole number of samples; 20 ms = 640 bytes)
    text    JSON control message: {"type": "ping"}  (answered with {"type": "pong"})
Server -> client
    text    {"type": "ready", "sample_rate": N, ...}       always the first message
    binary  PCM16LE mono bot audio at N Hz
    text    JSON events: transcript, user_started_speaking, user_stopped_speaking, bot_text,
            bot_started_speaking, bot_stopped_speaking, metrics, error, pong
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pipecat.frames.frames import (
    Frame,
    InputAudioRawFrame,
    OutputAudioRawFrame,
    OutputTransportMessageFrame,
    OutputTransportMessageUrgentFrame,
)
from pipecat.serializers.base_serializer import FrameSerializer
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from voicebot.errors import ProtocolError

PROTOCOL_VERSION = 1
INPUT_SAMPLE_RATE = 16000


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- server -> client -------------------------------------------------------------------


class ReadyEvent(_Message):
    """Always the first message: the session is ready and bot audio will come at `sample_rate`."""

    type: Literal["ready"] = "ready"
    protocol: int = PROTOCOL_VERSION
    session_id: str
    sample_rate: int
    input_sample_rate: int = INPUT_SAMPLE_RATE
    encoding: Literal["pcm_s16le"] = "pcm_s16le"
    channels: Literal[1] = 1


class TranscriptEvent(_Message):
    """What the person said (`final`: the utterance is complete)."""

    type: Literal["transcript"] = "transcript"
    text: str
    final: bool


class UserStartedSpeakingEvent(_Message):
    """The person's turn began; while the bot is speaking this interrupts it."""

    type: Literal["user_started_speaking"] = "user_started_speaking"


class UserStoppedSpeakingEvent(_Message):
    """The person's turn ended (turn detection decided); the bot's reply is on its way."""

    type: Literal["user_stopped_speaking"] = "user_stopped_speaking"


class BotTextEvent(_Message):
    """The words of the bot's reply, sent as each piece is spoken."""

    type: Literal["bot_text"] = "bot_text"
    text: str


class BotStartedSpeakingEvent(_Message):
    type: Literal["bot_started_speaking"] = "bot_started_speaking"


class BotStoppedSpeakingEvent(_Message):
    type: Literal["bot_stopped_speaking"] = "bot_stopped_speaking"


class MetricsEvent(_Message):
    """One stage's measurements for the current turn; only the fields measured are sent.

    Stage "turn" comes once per answered turn, as the bot starts speaking, with
    `timeline_ms`: when each step happened, in ms after the last voiced audio received.
    """

    type: Literal["metrics"] = "metrics"
    stage: Literal["stt", "llm", "tts", "turn"]
    ttfb_ms: float | None = None
    processing_ms: float | None = None
    rtf: float | None = None
    tokens_per_s: float | None = None
    # LLM: how long this reply waited for a model shared with other sessions.
    queue_ms: float | None = None
    # How many times this session's primary provider failed and its fallback took over.
    fallbacks: int | None = None
    # Turn: vad_stop, stt_start, stt_done, turn_end, llm_start, llm_first_token,
    # first_clause, tts_first_audio, bot_started (those seen), smart_turn_ms.
    timeline_ms: dict[str, float] | None = None


class ErrorEvent(_Message):
    """Something the client sent or the pipeline did went wrong; `code` is machine-readable."""

    type: Literal["error"] = "error"
    code: str
    message: str


class PongEvent(_Message):
    type: Literal["pong"] = "pong"


ServerEvent = Annotated[
    ReadyEvent
    | TranscriptEvent
    | UserStartedSpeakingEvent
    | UserStoppedSpeakingEvent
    | BotTextEvent
    | BotStartedSpeakingEvent
    | BotStoppedSpeakingEvent
    | MetricsEvent
    | ErrorEvent
    | PongEvent,
    Field(discriminator="type"),
]
SERVER_EVENTS: TypeAdapter[ServerEvent] = TypeAdapter(ServerEvent)


# --- client -> server (text messages; audio goes in binary messages) --------------------


class PingMessage(_Message):
    """Answered with a `pong` event."""

    type: Literal["ping"] = "ping"


ClientMessage = Annotated[PingMessage, Field(discriminator="type")]
CLIENT_MESSAGES: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)
CLIENT_MESSAGE_TYPES = ("ping",)


def encode_event(event: BaseModel) -> str:
    """One server event as the JSON text sent on the wire (unmeasured fields left out)."""
    return event.model_dump_json(exclude_none=True)


def decode_event(text: str | bytes) -> ServerEvent:
    """Parse one server event (clients and tests); raises pydantic's ValidationError."""
    return SERVER_EVENTS.validate_json(text)


def json_schema() -> dict[str, Any]:
    """The protocol's JSON Schema: what a client may send and what the server sends."""
    return {
        "title": "voicebot WebSocket protocol",
        "version": PROTOCOL_VERSION,
        "client_messages": CLIENT_MESSAGES.json_schema(),
        "server_events": SERVER_EVENTS.json_schema(),
    }


def parse_control_message(text: str) -> ClientMessage:
    """Validate a JSON text message from a client; raises ProtocolError naming the problem."""
    try:
        message = json.loads(text)
    except json.JSONDecodeError as e:
        raise ProtocolError(
            "invalid_json", f"text message is not valid JSON ({e.msg} at position {e.pos})"
        ) from e
    except RecursionError as e:
        raise ProtocolError("invalid_json", "text message is JSON nested too deeply") from e
    except ValueError as e:  # e.g. an integer beyond Python's digit limit
        raise ProtocolError("invalid_json", f"text message is not acceptable JSON ({e})") from e
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
    try:
        return CLIENT_MESSAGES.validate_python(message)
    except ValidationError as e:
        problem = e.errors()[0]
        where = ".".join(str(p) for p in problem["loc"][1:]) or "message"
        raise ProtocolError("invalid_message", f"{kind} message: {where}: {problem['msg']}") from e


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
            if isinstance(message, _Message):
                return encode_event(message)
        return None

    async def deserialize(self, data: str | bytes) -> Frame | None:
        if isinstance(data, bytes):
            return parse_audio(data)
        parse_control_message(data)
        return None
