"""One Whisper model per process behind a queue: batches waiting utterances, heals from CUDA OOM.

Sessions call `await engine.transcribe(samples)`. A single worker thread takes the
first waiting utterance and every other one already waiting (up to `max_batch_size`):
one alone goes through `WhisperModel.transcribe`; several go through faster-whisper's
`BatchedInferencePipeline` in one call, each as its own clip. Nothing waits on purpose
for a batch to fill, so a lone utterance never pays for batching.

Decoding is a single greedy pass (temperature 0, no fallback re-decodes): a retry at a
higher temperature can cost seconds, and what it would rescue the filters drop anyway.
Before the model, each utterance is gated by Silero VAD (silence and noise produce no
text) and capped at `max_utterance_secs`; after it, segments that look hallucinated
(high no-speech probability, low log-probability, repetitive) are dropped.
"""

from __future__ import annotations

import asyncio
import gc
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from loguru import logger

from voicebot.processors.vad_silero import SileroStream

if TYPE_CHECKING:
    import onnxruntime
    from faster_whisper import WhisperModel

SAMPLE_RATE = 16000
_VAD_WINDOW = 512


@dataclass(frozen=True)
class EngineOptions:
    language: str | None = "en"
    beam_size: int = 1
    no_speech_prob: float = 0.4
    log_prob_threshold: float = -1.0
    compression_ratio_threshold: float = 2.4
    max_utterance_secs: float = 30.0
    max_batch_size: int = 8
    # An utterance needs this many Silero windows (32 ms each) above 0.5 to be speech.
    min_speech_windows: int = 3


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str | None
    duration_s: float
    elapsed_ms: float
    rtf: float
    batch_size: int
    model: str
    device: str
    compute_type: str


@dataclass
class EngineStats:
    utterances: int = 0
    model_calls: int = 0
    max_batch: int = 0
    gated: int = 0
    capped: int = 0
    oom_retries: int = 0
    fallbacks: int = 0
    audio_s: float = 0.0
    busy_s: float = 0.0
    rtfs: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Counters and the median real-time factor, for /health and benchmarks."""
        rtfs = sorted(self.rtfs)
        return {
            "utterances": self.utterances,
            "model_calls": self.model_calls,
            "max_batch": self.max_batch,
            "gated": self.gated,
            "capped": self.capped,
            "oom_retries": self.oom_retries,
            "fallbacks": self.fallbacks,
            "audio_s": round(self.audio_s, 2),
            "rtf_median": rtfs[len(rtfs) // 2] if rtfs else None,
        }


@dataclass
class _Backend:
    model: WhisperModel
    name: str
    device: str
    compute_type: str
    batched: Any = None

    def pipeline(self) -> Any:
        if self.batched is None:
            from faster_whisper import BatchedInferencePipeline

            self.batched = BatchedInferencePipeline(self.model)
        return self.batched


@dataclass
class _Request:
    samples: np.ndarray
    future: Future[Transcript]
    submitted: float


FallbackLoader = Callable[[], tuple["WhisperModel", str, str, str]]


def is_cuda_oom(error: BaseException) -> bool:
    """CTranslate2 reports CUDA OOM as `RuntimeError: CUDA failed with error out of memory`."""
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


class WhisperEngine:
    """A shared faster-whisper model with a batching queue and CUDA-OOM recovery."""

    def __init__(
        self,
        model: WhisperModel,
        *,
        name: str,
        device: str,
        compute_type: str,
        options: EngineOptions | None = None,
        vad_session: onnxruntime.InferenceSession | None = None,
        fallback: FallbackLoader | None = None,
    ) -> None:
        self._backend = _Backend(model, name, device, compute_type)
        self.options = options or EngineOptions()
        self._vad_session = vad_session
        self._fallback = fallback
        self._queue: queue.Queue[_Request] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.stats = EngineStats()

    @property
    def model(self) -> WhisperModel:
        return self._backend.model

    @property
    def description(self) -> dict[str, str]:
        b = self._backend
        return {"model": b.name, "device": b.device, "compute_type": b.compute_type}

    def warm(self) -> None:
        """Decode one second of tone (both paths) so no real utterance pays first-call costs."""
        tone = 0.1 * np.sin(np.linspace(0, 2 * np.pi * 440, SAMPLE_RATE)).astype(np.float32)
        self._decode([tone])
        self._decode([tone, tone])

    async def transcribe(self, samples: np.ndarray) -> Transcript:
        """Transcribe float32 mono 16 kHz `samples`, batched with whatever else is waiting."""
        return await asyncio.wrap_future(self.submit(samples))

    def submit(self, samples: np.ndarray) -> Future[Transcript]:
        self._ensure_worker()
        future: Future[Transcript] = Future()
        # NaN/inf from a broken client or decoder would poison the whole batch.
        samples = np.clip(np.nan_to_num(np.asarray(samples, dtype=np.float32)), -1.0, 1.0)
        self._queue.put(_Request(samples, future, time.perf_counter()))
        return future

    def _ensure_worker(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._work, name="whisper-engine", daemon=True
                )
                self._thread.start()

    def _work(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < self.options.max_batch_size:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self._serve(batch)
            except Exception as e:  # never let one bad batch kill the worker
                logger.bind(error=repr(e)).error("whisper batch failed")
                for request in batch:
                    if not request.future.done():
                        request.future.set_exception(e)

    def _serve(self, batch: list[_Request]) -> None:
        speech = []
        for request in batch:
            request.samples = self._cap(request.samples)
            if self._is_speech(request.samples):
                speech.append(request)
            else:
                self.stats.gated += 1
                self._finish(request, "", 0.0, 0)
        if not speech:
            return
        start = time.perf_counter()
        texts = self._decode_healing([r.samples for r in speech])
        busy = time.perf_counter() - start
        audio = sum(len(r.samples) for r in speech) / SAMPLE_RATE
        self.stats.model_calls += 1
        self.stats.max_batch = max(self.stats.max_batch, len(speech))
        self.stats.busy_s += busy
        for request, text in zip(speech, texts, strict=True):
            self._finish(request, text, busy / audio if audio else 0.0, len(speech))

    def _finish(self, request: _Request, text: str, rtf: float, batch_size: int) -> None:
        duration = len(request.samples) / SAMPLE_RATE
        self.stats.utterances += 1
        self.stats.audio_s += duration
        if batch_size:
            self.stats.rtfs.append(rtf)
        b = self._backend
        request.future.set_result(
            Transcript(
                text=text,
                language=self.options.language,
                duration_s=round(duration, 3),
                elapsed_ms=round((time.perf_counter() - request.submitted) * 1000, 1),
                rtf=round(rtf, 4),
                batch_size=batch_size,
                model=b.name,
                device=b.device,
                compute_type=b.compute_type,
            )
        )

    def _cap(self, samples: np.ndarray) -> np.ndarray:
        limit = int(self.options.max_utterance_secs * SAMPLE_RATE)
        if len(samples) <= limit:
            return samples
        self.stats.capped += 1
        logger.bind(
            duration_s=round(len(samples) / SAMPLE_RATE, 1), cap_s=self.options.max_utterance_secs
        ).warning("utterance longer than stt.max_utterance_secs: transcribing only its start")
        return samples[:limit]

    def _is_speech(self, samples: np.ndarray) -> bool:
        if len(samples) == 0:
            return False
        if self._vad_session is None:
            return True
        stream = SileroStream(self._vad_session)
        voiced = 0
        for offset in range(0, len(samples) - _VAD_WINDOW + 1, _VAD_WINDOW):
            window = samples[offset : offset + _VAD_WINDOW]
            if float(stream(window, SAMPLE_RATE)[0][0]) > 0.5:
                voiced += 1
                if voiced >= self.options.min_speech_windows:
                    return True
        return False

    def _decode_healing(self, utterances: list[np.ndarray]) -> list[str]:
        """Decode; on CUDA OOM retry once in smaller batches, then fall back to the CPU model."""
        try:
            return self._decode(utterances)
        except RuntimeError as e:
            if not is_cuda_oom(e):
                raise
            gc.collect()
            self.stats.oom_retries += 1
            smaller = max(1, len(utterances) // 2)
            logger.bind(batch=len(utterances), retry_batch=smaller).warning(
                "CUDA out of memory in Whisper: retrying with a smaller batch"
            )
        try:
            texts: list[str] = []
            for i in range(0, len(utterances), smaller):
                texts.extend(self._decode(utterances[i : i + smaller]))
            return texts
        except RuntimeError as e:
            if not is_cuda_oom(e) or self._fallback is None:
                raise
        self._degrade()
        return self._decode(utterances)

    def _degrade(self) -> None:
        assert self._fallback is not None
        before = self.description
        model, name, device, compute_type = self._fallback()
        self._backend = _Backend(model, name, device, compute_type)
        self._fallback = None
        self.stats.fallbacks += 1
        gc.collect()
        logger.bind(before=before, after=self.description).error(
            "CUDA out of memory again: Whisper now runs on the fallback model"
        )

    def _decode(self, utterances: list[np.ndarray]) -> list[str]:
        if len(utterances) == 1:
            segments, _ = self._backend.model.transcribe(
                utterances[0],
                language=self.options.language,
                beam_size=self.options.beam_size,
                temperature=0.0,
                condition_on_previous_text=False,
                without_timestamps=True,
                vad_filter=False,
            )
            return [self._join(list(segments))]
        bounds, offset = [], 0
        for u in utterances:
            bounds.append((offset / SAMPLE_RATE, (offset + len(u)) / SAMPLE_RATE))
            offset += len(u)
        segments, _ = self._backend.pipeline().transcribe(
            np.concatenate(utterances),
            language=self.options.language,
            beam_size=self.options.beam_size,
            temperature=0.0,
            without_timestamps=True,
            clip_timestamps=[{"start": s, "end": e} for s, e in bounds],
            batch_size=len(utterances),
        )
        per_clip: list[list[Any]] = [[] for _ in utterances]
        starts = np.array([s for s, _ in bounds])
        for segment in segments:
            # Segment times are rounded to 10 ms; the clip that starts at or just before is it.
            index = int(np.searchsorted(starts, segment.start + 0.02, side="right")) - 1
            per_clip[max(index, 0)].append(segment)
        return [self._join(clip) for clip in per_clip]

    def _join(self, segments: list[Any]) -> str:
        o = self.options
        kept = [
            s.text.strip()
            for s in segments
            if s.no_speech_prob < o.no_speech_prob
            and s.avg_logprob >= o.log_prob_threshold
            and s.compression_ratio <= o.compression_ratio_threshold
        ]
        return " ".join(t for t in kept if t).strip()
