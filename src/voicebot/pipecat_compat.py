"""Every place voicebot relies on Pipecat internals (private attributes, skipped __init__s).

Pipecat is pinned (pyproject: pipecat-ai==1.14.0). Each function below names the private
detail it depends on; tests/test_pipecat_compat.py checks each against the installed
Pipecat and fails with a clear message when an upgrade moves one. Nothing else in
voicebot touches a Pipecat private attribute.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from pipecat.audio.turn.base_turn_analyzer import EndOfTurnState
from pipecat.audio.turn.smart_turn.base_smart_turn import BaseSmartTurn, SmartTurnParams
from pipecat.audio.vad.vad_analyzer import VADAnalyzer, VADParams, VADState
from pipecat.frames.frames import Frame
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.llm_service import LLMService
from pipecat.services.tts_service import TTSService
from pipecat.utils.text.base_text_aggregator import BaseTextAggregator

if TYPE_CHECKING:
    import onnxruntime
    from pipecat.audio.turn.smart_turn.local_smart_turn_v3 import LocalSmartTurnAnalyzerV3
    from pipecat.audio.vad.silero import SileroOnnxModel, SileroVADAnalyzer
    from pipecat.frames.frames import InputAudioRawFrame
    from pipecat.processors.aggregators.llm_context import LLMContext
    from pipecat.processors.frameworks.rtvi import RTVIObserver
    from pipecat.services.stt_service import SegmentedSTTService
    from pipecat.services.whisper.stt import WhisperSTTService
    from pipecat.transports.base_input import BaseInputTransport
    from pipecat.transports.websocket.fastapi import (
        FastAPIWebsocketInputTransport,
        FastAPIWebsocketTransport,
    )

PIPECAT_VERSION = "1.14.0"

# The private names each function relies on, for the contract test: (owner, names).
CONTRACT: dict[str, tuple[str, tuple[str, ...]]] = {
    "adopt_silero_session": (
        "pipecat.audio.vad.silero.SileroOnnxModel",
        ("session", "sample_rates", "reset_states"),
    ),
    "init_shared_silero_analyzer": (
        "pipecat.audio.vad.silero.SileroVADAnalyzer",
        ("_model", "_windows_since_reset", "_low_confidence_windows"),
    ),
    "vad_speech_started": ("pipecat.audio.vad.vad_analyzer.VADAnalyzer", ("_vad_state",)),
    "analyze_on_this_thread": ("pipecat.audio.vad.vad_analyzer.VADAnalyzer", ("_run_analyzer",)),
    "init_shared_smart_turn": (
        "pipecat.audio.turn.smart_turn.local_smart_turn_v3.LocalSmartTurnAnalyzerV3",
        ("_session", "_log_data"),
    ),
    "SmartTurnModelThread": (
        "pipecat.audio.turn.smart_turn.base_smart_turn.BaseSmartTurn",
        ("_model_executor", "_executor", "_audio_buffer", "_process_speech_segment"),
    ),
    "init_tts_base_only": ("pipecat.services.tts_service.TTSService", ("__init__",)),
    "replace_text_aggregator": (
        "pipecat.services.tts_service.TTSService",
        ("_text_aggregator",),
    ),
    "text_aggregator": ("pipecat.services.tts_service.TTSService", ("_text_aggregator",)),
    "adopt_whisper_model": ("pipecat.services.whisper.stt.WhisperSTTService", ("_load", "_model")),
    "answer_context": (
        "pipecat.services.openai.base_llm.BaseOpenAILLMService",
        ("_process_context",),
    ),
    "relay_pushes": ("pipecat.processors.frame_processor.FrameProcessor", ("push_frame",)),
    "replace_websocket_input": (
        "pipecat.transports.websocket.fastapi.FastAPIWebsocketTransport",
        ("_client", "_params", "_input_name", "_input"),
    ),
    "mark_websocket_closing": (
        "pipecat.transports.websocket.fastapi.FastAPIWebsocketClient",
        ("_closing",),
    ),
    "drop_unsent_bot_transcription": (
        "pipecat.processors.frameworks.rtvi.observer.RTVIObserver",
        ("_bot_transcription",),
    ),
    "cancel_stt_segment_task": (
        "pipecat.services.stt_service.SegmentedSTTService",
        ("_segment_task", "_cancel_segment_task"),
    ),
    "segment_so_far": (
        "pipecat.services.stt_service.SegmentedSTTService",
        ("_audio_buffer", "_trailing_silence"),
    ),
    "close_silent_reply_context": (
        "pipecat.services.tts_service.TTSService",
        ("_turn_context_id", "_is_yielding_frames_synchronously"),
    ),
    "llm_is_speculating": ("pipecat.services.llm_service.LLMService", ("_speculation_gate",)),
    "websocket_input_receive_loop": (
        "pipecat.transports.websocket.fastapi.FastAPIWebsocketInputTransport",
        ("_receive_messages", "_client"),
    ),
}


def llm_is_speculating(llm: LLMService[Any]) -> bool:
    """Whether `llm` is generating a reply its `SpeculationGate` holds (`_speculation_gate`):
    one for a turn that has not been confirmed yet."""
    return bool(llm._speculation_gate.is_speculating)


def adopt_silero_session(stream: SileroOnnxModel, session: onnxruntime.InferenceSession) -> None:
    """Set up a `SileroOnnxModel` around a shared session (its __init__ would load its own)."""
    stream.session = session
    stream.sample_rates = [8000, 16000]
    stream.reset_states()


def init_shared_silero_analyzer(
    analyzer: SileroVADAnalyzer,
    model: SileroOnnxModel,
    *,
    sample_rate: int | None,
    params: VADParams | None,
) -> None:
    """What `SileroVADAnalyzer.__init__` does, with `model` instead of a model file load."""
    VADAnalyzer.__init__(analyzer, sample_rate=sample_rate, params=params)
    analyzer._model = model
    analyzer._windows_since_reset = 0
    analyzer._low_confidence_windows = 0


def vad_speech_started(analyzer: VADAnalyzer) -> bool:
    """Whether a VAD analyzer is past its start window (SPEAKING or STOPPING, `_vad_state`).

    Read from inside `voice_confidence`, that is the state before the window being scored.
    """
    state = getattr(analyzer, "_vad_state", VADState.QUIET)  # set by set_sample_rate
    return state in (VADState.SPEAKING, VADState.STOPPING)


def analyze_on_this_thread(analyzer: VADAnalyzer, audio: bytes) -> VADState:
    """What `VADAnalyzer.analyze_audio` does in the analyzer's own thread, done here:
    buffer `audio`, score each complete window, step the state machine
    (`VADAnalyzer._run_analyzer`)."""
    return analyzer._run_analyzer(audio)


def init_shared_smart_turn(
    analyzer: LocalSmartTurnAnalyzerV3,
    session: onnxruntime.InferenceSession,
    *,
    sample_rate: int | None,
    params: SmartTurnParams | None,
) -> None:
    """What `LocalSmartTurnAnalyzerV3.__init__` does, with a shared ONNX session."""
    BaseSmartTurn.__init__(analyzer, sample_rate=sample_rate, params=params)
    analyzer._log_data = False
    analyzer._session = session


class SmartTurnModelThread(BaseSmartTurn):
    """A smart-turn analyzer that chooses the thread its model runs on (`new_model_thread`).

    Pipecat 1.14 starts a plain one-thread executor in `_model_executor` the first time
    the model runs, and again after `cleanup`; this one starts the subclass's instead.
    """

    def new_model_thread(self) -> ThreadPoolExecutor:
        raise NotImplementedError

    @property
    def _model_executor(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = self.new_model_thread()
        return self._executor

    def heard(self) -> list[tuple[float, Any]]:
        """The turn's audio so far, as Pipecat 1.14 buffers it (`_audio_buffer`: time and
        PCM piece); a new list, the pieces themselves are not copied."""
        return list(self._audio_buffer)

    async def judge(self, heard: list[tuple[float, Any]]) -> tuple[EndOfTurnState, Any]:
        """The model's verdict on `heard`, on the model thread, leaving the analyzer's
        state alone (Pipecat 1.14's `_process_speech_segment`, which
        `analyze_end_of_turn` runs on the whole buffer)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._model_executor, self._process_speech_segment, heard)


def init_tts_base_only(service: TTSService, **kwargs: Any) -> None:
    """Run only `TTSService.__init__` on a subclass whose own __init__ loads a model."""
    TTSService.__init__(service, **kwargs)


def replace_text_aggregator(
    service: TTSService, make: Callable[[BaseTextAggregator], BaseTextAggregator]
) -> None:
    """Swap the text aggregator Pipecat 1.14 builds in `TTSService.__init__`."""
    service._text_aggregator = make(service._text_aggregator)  # type: ignore[assignment]


def text_aggregator(service: TTSService) -> BaseTextAggregator:
    """The aggregator that holds a reply's text until a sentence ends (`_text_aggregator`)."""
    aggregator: BaseTextAggregator = service._text_aggregator
    return aggregator


async def close_silent_reply_context(service: TTSService) -> None:
    """End the audio context of a reply whose last piece gave no audio, as the reply ends.

    For a service that yields its audio from `run_tts` (HTTP style), Pipecat 1.14 closes the
    reply's context in `on_turn_context_completed` only when the last `run_tts` yielded
    audio (`_is_yielding_frames_synchronously`); otherwise the context stays open until
    `stop_frame_timeout_s` passes, and the next reply's audio waits behind it. Call this
    before Pipecat's `on_turn_context_completed` (it reads `_turn_context_id`).
    """
    context_id = service._turn_context_id
    if (
        context_id
        and not service._is_yielding_frames_synchronously
        and service.audio_context_available(context_id)
    ):
        await service.remove_audio_context(context_id)


def adopt_whisper_model(service: WhisperSTTService, model: Any) -> None:
    """Give Pipecat's Whisper service a loaded model (its `_load` would load one)."""
    service._model = model


def answer_context(service: LLMService[Any], context: LLMContext) -> Awaitable[None]:
    """Run one LLM service's generation for `context` (what its process_frame calls)."""
    process: Callable[[LLMContext], Awaitable[None]] = service._process_context  # type: ignore[attr-defined]
    return process(context)


Push = Callable[[Frame, FrameDirection], Awaitable[None]]
AudioPush = Callable[["InputAudioRawFrame"], Awaitable[None]]


def relay_pushes(service: LLMService[Any], push: Push) -> None:
    """Route everything `service` pushes through `push` (it is owned, not linked)."""
    service.push_frame = push  # type: ignore[method-assign, assignment]


def replace_websocket_input(
    transport: FastAPIWebsocketTransport, make: Callable[..., FastAPIWebsocketInputTransport]
) -> None:
    """Swap the input side Pipecat's FastAPI transport builds for `make(**its arguments)`."""
    transport._input = make(
        transport=transport,
        client=transport._client,
        params=transport._params,
        name=transport._input_name,
    )


def route_input_audio(
    transport_input: BaseInputTransport,
    make_route: Callable[[AudioPush], AudioPush],
) -> None:
    """Send every audio frame `transport_input` receives through `make_route(its push)`.

    Relies on Pipecat's input transports (FastAPI WebSocket, SmallWebRTC, Daily) handing
    each frame they receive to `self.push_audio_frame`; the route replaces that method on
    this one instance and passes frames on to the original.
    """
    route = make_route(transport_input.push_audio_frame)
    transport_input.push_audio_frame = route  # type: ignore[method-assign, assignment]


def websocket_client(transport: FastAPIWebsocketInputTransport) -> Any:
    """The client wrapper a FastAPI input transport reads from (its receive loop is overridden:
    `FastAPIWebsocketInputTransport._receive_messages`)."""
    return transport._client


def mark_websocket_closing(client: Any) -> None:
    """Tell a `FastAPIWebsocketClient` we closed its socket ourselves, so its `disconnect()`
    does not close it a second time (Starlette raises, and Pipecat logs that at ERROR)."""
    client._closing = True


# Warnings Pipecat logs on perfectly normal events: (logger name, message prefix). Our log
# set-up shows them only at DEBUG. A client that offers no video (our page, aiortc peers)
# triggers the transceiver ones on every connect; a normal hang-up ends the audio track,
# which SmallWebRTC reports as a media stream error.
ROUTINE_WARNINGS: tuple[tuple[str, str], ...] = (
    ("pipecat.transports.smallwebrtc.connection", "No video transceiver is available"),
    ("pipecat.transports.smallwebrtc.connection", "No screen video transceiver is available"),
    (
        "pipecat.transports.smallwebrtc.transport",
        "Media stream error while reading the audio",
    ),
)


def drop_unsent_bot_transcription(observer: RTVIObserver) -> None:
    """Forget the unfinished sentence an RTVI observer holds for its next `bot-transcription`."""
    observer._bot_transcription = ""


async def cancel_stt_segment_task(service: SegmentedSTTService) -> None:
    """Cancel a segmented STT's transcription task if it is still running.

    Pipecat 1.14 cancels it when a CancelFrame or EndFrame reaches the service; a session
    torn down without one reaching it (a client gone mid-turn) left the task pending, and
    asyncio then logged "Task was destroyed but it is pending" at ERROR.
    """
    if service._segment_task is not None:
        await service._cancel_segment_task()


def segment_so_far(service: SegmentedSTTService) -> tuple[bytes, bytes]:
    """The audio a segmented STT has buffered for the segment under way, and the silence
    it pads a segment with before transcription (`trailing_silence_secs`)."""
    return bytes(service._audio_buffer), service._trailing_silence()


def is_routine_warning(name: str | None, message: str) -> bool:
    """True for a Pipecat warning listed in ROUTINE_WARNINGS."""
    return any(name == n and message.startswith(m) for n, m in ROUTINE_WARNINGS)
