"""One Whisper model per process behind a queue: batches waiting utterances, heals from CUDA OOM.

Sessions call `await engine.transcribe(samples)`. A single worker thread takes the
first waiting utterance and every other one already waiting (up to `max_batch_size`):
one alone goes through `WhisperModel.transcribe`; several go through faster-whisper's
`BatchedInferencePipeline` in one call, each as its own clip. Nothing waits on purpose
for a batch to fill, so a lone utterance never pays for batching. A request whose caller
has gone (a person hung up mid-utterance) is dropped on its own; the rest of its batch
is unaffected. Gating and capping live in `speech_gate`, decoding in `whisper_decode`.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from loguru import logger

from voicebot.providers.stt.speech_gate import SpeechGate
from voicebot.providers.stt.whisper_decode import FallbackLoader, WhisperBackend, WhisperDecoder
from voicebot.threads import yield_to_audio

if TYPE_CHECKING:
    import onnxruntime
    from faster_whisper import WhisperModel

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class EngineOptions:
    language: str | None = "en"
    beam_size: int = 1
    no_speech_prob: float = 0.6
    log_prob_threshold: float = -1.0
    sure_speech_log_prob_threshold: float = -1.2
    compression_ratio_threshold: float = 2.4
    max_utterance_secs: float = 30.0
    max_batch_size: int = 8
    # An utterance needs this many Silero windows (32 ms each) above 0.5 to be speech.
    min_speech_windows: int = 3
    # The worker thread's nice value above audio work (see voicebot.threads).
    compute_nice: int = 0


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
    # Speech whose words Whisper could not make out (whisper_decode.Heard); `text` is "".
    unclear: bool = False


@dataclass
class EngineStats:
    utterances: int = 0
    model_calls: int = 0
    max_batch: int = 0
    gated: int = 0
    capped: int = 0
    oom_retries: int = 0
    fallbacks: int = 0
    cancelled: int = 0
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
            "cancelled": self.cancelled,
            "audio_s": round(self.audio_s, 2),
            "rtf_median": rtfs[len(rtfs) // 2] if rtfs else None,
        }


@dataclass
class _Request:
    samples: np.ndarray
    future: Future[Transcript]
    submitted: float


_CLOSE = object()


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
        self.options = options or EngineOptions()
        self.stats = EngineStats()
        self._gate = SpeechGate(
            vad_session,
            max_secs=self.options.max_utterance_secs,
            min_speech_windows=self.options.min_speech_windows,
        )
        self._decoder = WhisperDecoder(
            WhisperBackend(model, name, device, compute_type), self.options, self.stats, fallback
        )
        self._queue: queue.Queue[_Request | object] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._closed = False

    @property
    def model(self) -> WhisperModel:
        return self._decoder.backend.model

    @property
    def description(self) -> dict[str, str]:
        return self._decoder.backend.description

    def warm(self) -> None:
        """Decode one second of tone so no real utterance pays first-call costs.

        The batched path is warmed too where batches can happen (`max_batch_size` > 1):
        on a CPU, where auto picks 1, it would only add a second decode to start-up.
        """
        tone = 0.1 * np.sin(np.linspace(0, 2 * np.pi * 440, SAMPLE_RATE)).astype(np.float32)
        self._decoder.decode([tone])
        if self.options.max_batch_size > 1:
            self._decoder.decode([tone, tone])

    async def transcribe(self, samples: np.ndarray) -> Transcript:
        """Transcribe float32 mono 16 kHz `samples`, batched with whatever else is waiting.

        Cancelling the caller cancels the request: it is dropped if not yet decoding.
        """
        return await asyncio.wrap_future(self.submit(samples))

    def submit(self, samples: np.ndarray) -> Future[Transcript]:
        if self._closed:
            raise RuntimeError("the Whisper engine is closed")
        self._ensure_worker()
        future: Future[Transcript] = Future()
        # NaN/inf from a broken client or decoder would poison the whole batch.
        samples = np.clip(np.nan_to_num(np.asarray(samples, dtype=np.float32)), -1.0, 1.0)
        self._queue.put(_Request(samples, future, time.perf_counter()))
        return future

    def close(self, timeout_secs: float = 5.0) -> None:
        """Stop the worker after the requests already queued; later submits are refused."""
        self._closed = True
        if self._thread is not None:
            self._queue.put(_CLOSE)
            self._thread.join(timeout_secs)

    def _ensure_worker(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._work, name="whisper-engine", daemon=True
                )
                self._thread.start()

    def _take(self, item: _Request | object, batch: list[_Request]) -> None:
        assert isinstance(item, _Request)
        # A request cancelled while queued is dropped here; once running it can no
        # longer be cancelled, so its result can always be set.
        if item.future.set_running_or_notify_cancel():
            batch.append(item)
        else:
            self.stats.cancelled += 1

    def _work(self) -> None:
        yield_to_audio(self.options.compute_nice)
        while True:
            item = self._queue.get()
            if item is _CLOSE:
                return
            batch: list[_Request] = []
            self._take(item, batch)
            closing = False
            while len(batch) < self.options.max_batch_size:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _CLOSE:
                    closing = True
                    break
                self._take(item, batch)
            if batch:
                self._serve_safely(batch)
            if closing:
                return

    def _serve_safely(self, batch: list[_Request]) -> None:
        try:
            self._serve(batch)
        except Exception as e:  # never let one bad batch kill the worker
            logger.bind(error=repr(e), batch=len(batch)).error("whisper batch failed")
            for request in batch:
                if not request.future.done():
                    request.future.set_exception(e)

    def _serve(self, batch: list[_Request]) -> None:
        speech = []
        for request in batch:
            request.samples, capped = self._gate.cap(request.samples)
            self.stats.capped += capped
            if self._gate.is_speech(request.samples):
                speech.append(request)
            else:
                self.stats.gated += 1
                self._finish(request, "", 0.0, 0)
        if not speech:
            return
        start = time.perf_counter()
        heard = self._decoder.decode_healing([r.samples for r in speech])
        busy = time.perf_counter() - start
        audio = sum(len(r.samples) for r in speech) / SAMPLE_RATE
        self.stats.model_calls += 1
        self.stats.max_batch = max(self.stats.max_batch, len(speech))
        self.stats.busy_s += busy
        for request, words in zip(speech, heard, strict=True):
            rtf = busy / audio if audio else 0.0
            self._finish(request, words.text, rtf, len(speech), unclear=words.unclear)

    def _finish(
        self, request: _Request, text: str, rtf: float, batch_size: int, *, unclear: bool = False
    ) -> None:
        duration = len(request.samples) / SAMPLE_RATE
        self.stats.utterances += 1
        self.stats.audio_s += duration
        if batch_size:
            self.stats.rtfs.append(rtf)
        b = self._decoder.backend
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
                unclear=unclear,
            )
        )
