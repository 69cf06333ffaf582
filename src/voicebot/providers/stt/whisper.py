"""faster-whisper STT for Pipecat: a segmented STT service over the process-wide WhisperEngine."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from loguru import logger
from pipecat.frames.frames import (
    Frame,
    MetricsFrame,
    TranscriptionFrame,
    VADUserStartedSpeakingFrame,
)
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.whisper.stt import WhisperSTTService, WhisperSTTSettings
from pipecat.transcriptions.language import Language
from pipecat.utils.time import time_now_iso8601

from voicebot import model_files
from voicebot.errors import ConfigError
from voicebot.observability.metrics_data import RTFMetricsData
from voicebot.pipecat_compat import (
    adopt_whisper_model,
    cancel_stt_segment_task,
    segment_so_far,
)
from voicebot.providers.llm.local import cpu_threads
from voicebot.providers.spec import ProviderSpec
from voicebot.providers.stt.whisper_decode import WhisperBackend
from voicebot.providers.stt.whisper_engine import EngineOptions, Transcript, WhisperEngine
from voicebot.turns.segments import NoWordsFrame, SegmentTranscript

if TYPE_CHECKING:
    from voicebot.audio.silence_onset import SilenceOnset
    from voicebot.config import Settings


class FasterWhisperSTTService(WhisperSTTService):
    """Pipecat's segmented Whisper service, transcribing through a shared `WhisperEngine`.

    Pipecat buffers the user's audio between VAD start and stop and hands the segment to
    `run_stt`. The parent loads a model in `__init__` (`_load`); here `_load` adopts the
    engine's model, so a session costs no model load, and utterances from concurrent
    sessions are batched by the engine. Each transcript reports its real-time factor.
    """

    _settings: WhisperSTTSettings
    # It tells speech whose words it could not make out (`on_unclear_speech`).
    REPORTS_UNCLEAR_SPEECH = True

    def __init__(self, *, engine: WhisperEngine, language: str = "en", **kwargs: Any) -> None:
        self._engine = engine
        # A transcription started when a pause began (`on_silence`): the segment's audio
        # so far, and the engine's future for it.
        self._early: tuple[bytes, Future[Transcript]] | None = None
        self._rest_of_pause_s = 0.0
        self.early = EarlyStarts()
        # The VAD's speech starts so far: a transcript ready after another start is marked
        # (turns/segments.py).
        self._speech_starts = 0
        super().__init__(
            # Whisper tiny.en on 2 CPU cores: ~0.3 s for a short question, ~0.6 s worst case.
            ttfs_p99_latency=0.6,
            settings=WhisperSTTService.Settings(
                model=engine.description["model"],
                language=Language(language),
                no_speech_prob=engine.options.no_speech_prob,
            ),
            **kwargs,
        )
        # Speech whose words Whisper could not make out (`Transcript.unclear`), told before
        # its NoWordsFrame goes on, so the turn that ends without words can ask to repeat
        # (processors/ask_to_repeat.py).
        self._register_event_handler("on_unclear_speech", sync=True)

    async def cleanup(self) -> None:
        # A session torn down mid-turn may never pass this service a CancelFrame.
        await cancel_stt_segment_task(self)
        self._drop_early()
        await super().cleanup()

    def _load(self) -> None:
        adopt_whisper_model(self, self._engine.model)
        unsupported = self._unsupported_language()
        if unsupported:
            raise ValueError(unsupported)

    def start_on_pauses(self, onset: SilenceOnset) -> None:
        """Start transcribing when `onset` tells of a pause (see `on_silence`)."""
        self._rest_of_pause_s = onset.rest_secs
        onset.subscribe(self.on_silence)

    def on_silence(self, silent: bool) -> None:
        """A pause began: transcribe the segment so far. Speech came back: drop that.

        Called by the session's `SilenceOnset` (audio/silence_onset.py) on the event loop.
        The audio so far is followed by the rest of the pause as silence and then the
        padding Pipecat adds at the stop, so Whisper hears a segment as long as the one
        the stop will give: a shorter one changed the words on 4 of 16 unseen utterances
        (Whisper tiny.en reacts to 80 ms more or less of trailing zeros), this one on 2,
        by 20 ms of length. At the stop, `run_stt` uses the result when the segment
        starts with that audio: the rest was silence to the VAD, or speech would have
        withdrawn it.
        """
        self._drop_early()
        if not silent:
            return
        so_far, padding = segment_so_far(self)
        if so_far:
            rest_of_pause = bytes(2 * round(self.sample_rate * self._rest_of_pause_s))
            audio = so_far + rest_of_pause + padding
            self._early = (so_far, self._engine.submit(_samples(audio)))
            self.early.started += 1

    def _drop_early(self) -> None:
        if self._early is not None:
            self._early[1].cancel()  # dropped if still queued; a running decode finishes
            self._early = None
            self.early.dropped += 1

    def _take_early(self, audio: bytes) -> Future[Transcript] | None:
        """The early transcription of `audio`, if one began on it with nothing said since."""
        early, self._early = self._early, None
        if early is None:
            return None
        so_far, future = early
        if audio.startswith(so_far):
            self.early.used += 1
            return future
        future.cancel()
        self.early.dropped += 1
        return None

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        if isinstance(frame, VADUserStartedSpeakingFrame):
            self._speech_starts += 1
        await super().process_frame(frame, direction)

    async def run_stt(self, audio: bytes) -> AsyncGenerator[Frame, None]:
        """Transcribe one VAD-delimited segment of 16-bit PCM."""
        starts = self._speech_starts
        early = self._take_early(audio)
        future = early or self._engine.submit(_samples(audio))
        await self.start_processing_metrics()
        try:
            result = await asyncio.wrap_future(future)
        except Exception as e:  # ctranslate2 raises RuntimeError for device/compute failures
            await self.push_error(error_msg=f"Whisper transcription failed: {e}", exception=e)
            return
        finally:
            await self.stop_processing_metrics()
        if result.batch_size:
            rtf = RTFMetricsData(processor=self.name, model=result.model, value=result.rtf)
            await self.push_frame(MetricsFrame(data=[rtf]))
        if not result.text:
            if result.unclear:
                await self._call_event_handler("on_unclear_speech")
            yield NoWordsFrame(spoken_since=self._speech_starts > starts, unclear=result.unclear)
            return
        logger.bind(
            stt_chars=len(result.text), batch=result.batch_size, early=early is not None
        ).debug("transcribed")
        language = Language(result.language) if result.language else None
        await self._handle_transcription(result.text, True, language)
        segment = SegmentTranscript(spoken_since=self._speech_starts > starts)
        yield TranscriptionFrame(
            result.text, self._user_id, time_now_iso8601(), language, result=segment
        )


def _samples(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype=np.int16).astype(np.float32) / 32768.0


@dataclass
class EarlyStarts:
    """Transcriptions started when a pause began: `used` at the VAD's stop, `dropped`
    because speech came back first (or the session ended)."""

    started: int = 0
    used: int = 0
    dropped: int = 0


def load_engine(settings: Settings) -> WhisperEngine:
    """The shared Whisper engine for `stt.*`; a GPU that fails to load it leaves it on the CPU."""
    from voicebot.audio.sessions import load_silero_session
    from voicebot.autotune import encoder_window
    from voicebot.providers.stt.short_window import ShortWindowWhisperModel

    stt = settings.stt.whisper
    model_dir = model_files.whisper_model_dir(settings)
    name = stt.model_path.name if stt.model_path else stt.model
    threads = cpu_threads(stt.cpu_threads)
    device, compute_type = stt.device, stt.compute_type
    index = stt.device_index if isinstance(stt.device_index, int) else 0

    def whisper_model(
        path: str, *, called: str, device: str, **kwargs: Any
    ) -> ShortWindowWhisperModel:
        # Auto-tuning resolved the setting for the device it expected; settings that were
        # not auto-tuned, or a CUDA load that fell back to the CPU, decide here.
        window = encoder_window(stt.encoder_window_secs, device, called)
        return ShortWindowWhisperModel(path, window_secs=window, device=device, **kwargs)

    try:
        model = whisper_model(
            str(model_dir),
            called=name,
            device=device,
            device_index=index,
            compute_type=compute_type,
            cpu_threads=threads,
            local_files_only=True,
        )
    except (RuntimeError, ValueError, OSError) as e:
        if device != "cuda":
            raise
        logger.bind(reason=str(e)).error(
            "Whisper could not load on CUDA: running on the CPU (int8)"
        )
        device, compute_type = "cpu", "int8"
        model = whisper_model(
            str(model_dir), called=name, device="cpu", compute_type="int8", cpu_threads=threads
        )

    def cpu_fallback() -> WhisperBackend:
        small = model_files.find_whisper("tiny.en", settings) or model_dir
        called, label = ("tiny.en", small.name) if small != model_dir else (name, name)
        fallback = whisper_model(
            str(small), called=called, device="cpu", compute_type="int8", cpu_threads=threads
        )
        return WhisperBackend(fallback, label, "cpu", "int8")

    batch = stt.batch_size if isinstance(stt.batch_size, int) else 1
    return WhisperEngine(
        model,
        name=name,
        device=device,
        compute_type=compute_type,
        options=EngineOptions(
            language=settings.stt.language,
            no_speech_prob=stt.no_speech_prob,
            log_prob_threshold=stt.log_prob_threshold,
            sure_speech_log_prob_threshold=stt.sure_speech_log_prob_threshold,
            compression_ratio_threshold=stt.compression_ratio_threshold,
            max_utterance_secs=stt.max_utterance_secs,
            compute_nice=settings.server.compute_nice,
            # On a CPU a batch costs as much as its parts and everyone in it waits for the
            # slowest (measured: no throughput gain, higher mean latency), so auto picks 1.
            max_batch_size=max(batch, 1),
        ),
        vad_session=load_silero_session(),
        fallback=cpu_fallback if device == "cuda" else None,
    )


def _check(settings: Settings) -> None:
    for key in ("model", "device", "compute_type"):
        if getattr(settings.stt.whisper, key) == "auto":
            raise ConfigError(
                f"stt.whisper.{key} is still 'auto': resolve the settings with voicebot.autotune "
                "first"
            )
    model_files.whisper_model_dir(settings)


def _build(settings: Settings, engine: WhisperEngine) -> FasterWhisperSTTService:
    return FasterWhisperSTTService(engine=engine, language=settings.stt.language)


def _describe(settings: Settings) -> str:
    stt = settings.stt.whisper
    name = stt.model_path.name if stt.model_path else stt.model
    return f"{name} ({stt.device}/{stt.compute_type})"


SPEC = ProviderSpec(
    id="whisper",
    stage="stt",
    extra="whisper",
    requires=("faster_whisper",),
    check=_check,
    load=load_engine,
    warm=lambda engine: engine.warm(),
    build=_build,
    describe=_describe,
)
