"""Whisper decoding for the engine: one greedy pass, hallucination filters, CUDA-OOM healing."""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import numpy as np
from loguru import logger

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

    from voicebot.providers.stt.whisper_engine import EngineOptions, EngineStats

SAMPLE_RATE = 16000


@dataclass
class WhisperBackend:
    """A loaded model and what it runs on; batched decoding is set up on first use."""

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

    @property
    def description(self) -> dict[str, str]:
        return {"model": self.name, "device": self.device, "compute_type": self.compute_type}


# Loads the smaller CPU model used once CUDA has run out of memory twice.
FallbackLoader = Callable[[], WhisperBackend]


def is_cuda_oom(error: BaseException) -> bool:
    """CTranslate2 reports CUDA OOM as `RuntimeError: CUDA failed with error out of memory`."""
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


class WhisperDecoder:
    """Decodes utterances with the current backend; heals from CUDA OOM.

    Decoding is a single greedy pass (temperature 0, no fallback re-decodes): a retry at
    a higher temperature can cost seconds, and what it would rescue the filters drop anyway.
    Segments that look hallucinated (high no-speech probability, low log-probability,
    repetitive) are dropped.
    """

    def __init__(
        self,
        backend: WhisperBackend,
        options: EngineOptions,
        stats: EngineStats,
        fallback: FallbackLoader | None = None,
    ) -> None:
        self.backend = backend
        self._options = options
        self._stats = stats
        self._fallback = fallback

    def decode_healing(self, utterances: list[np.ndarray]) -> list[Heard]:
        """Decode; on CUDA OOM retry once in smaller batches, then fall back to the CPU model."""
        try:
            return self.decode(utterances)
        except RuntimeError as e:
            if not is_cuda_oom(e):
                raise
            gc.collect()
            self._stats.oom_retries += 1
            smaller = max(1, len(utterances) // 2)
            logger.bind(batch=len(utterances), retry_batch=smaller).warning(
                "CUDA out of memory in Whisper: retrying with a smaller batch"
            )
        try:
            heard: list[Heard] = []
            for i in range(0, len(utterances), smaller):
                heard.extend(self.decode(utterances[i : i + smaller]))
            return heard
        except RuntimeError as e:
            if not is_cuda_oom(e) or self._fallback is None:
                raise
        self._degrade()
        return self.decode(utterances)

    def _degrade(self) -> None:
        assert self._fallback is not None
        before = self.backend.description
        self.backend = self._fallback()
        self._fallback = None
        self._stats.fallbacks += 1
        gc.collect()
        logger.bind(before=before, after=self.backend.description).error(
            "CUDA out of memory again: Whisper now runs on the fallback model"
        )

    def decode(self, utterances: list[np.ndarray]) -> list[Heard]:
        o = self._options
        if len(utterances) == 1:
            segments, _ = self.backend.model.transcribe(
                utterances[0],
                language=o.language,
                beam_size=o.beam_size,
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
        segments, _ = self.backend.pipeline().transcribe(
            np.concatenate(utterances),
            language=o.language,
            beam_size=o.beam_size,
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

    def _join(self, segments: list[Any]) -> Heard:
        kept = []
        unsure_words = False
        for s in segments:
            verdict = judge(s, self._options)
            if verdict == "kept":
                kept.append(s.text.strip())
                continue
            unsure_words = unsure_words or (verdict == "unsure words" and bool(s.text.strip()))
            logger.bind(
                no_speech_prob=round(s.no_speech_prob, 3),
                avg_logprob=round(s.avg_logprob, 3),
                compression_ratio=round(s.compression_ratio, 2),
                verdict=verdict,
            ).debug(f"Whisper segment dropped as a likely hallucination: {s.text.strip()!r}")
        text = " ".join(t for t in kept if t).strip()
        return Heard(text, unclear=not text and unsure_words)


class Heard(NamedTuple):
    """What Whisper made of one utterance: the words kept, and whether it was speech whose
    words it could not make out (`unclear`: every segment dropped, at least one of them
    only for the low probability of its words, which a mumble, an accent tiny.en does not
    know, or speech played backwards all give). Noise and silence are not unclear."""

    text: str
    unclear: bool = False


# Under this no-speech probability Whisper is sure it heard speech (see `judge`).
SURE_SPEECH_NO_SPEECH = 0.1


Verdict = Literal["kept", "no speech", "repetitive", "unsure words"]


def keeps(segment: Any, o: EngineOptions) -> bool:
    """Whether a decoded segment is speech worth answering rather than a hallucination."""
    return judge(segment, o) == "kept"


def judge(segment: Any, o: EngineOptions) -> Verdict:
    """Whether a decoded segment is kept, or why it is dropped as a likely hallucination.

    Dropped: likely non-speech, repetitive, or decoded with a low average
    log-probability. A segment Whisper is sure holds speech (no-speech probability under
    `SURE_SPEECH_NO_SPEECH`) gets the lower `sure_speech_log_prob_threshold`: an accent
    or a fast talker it was not trained on lowers its confidence in the words, not in
    the speech. (Measured on tiny.en: real speech in unfamiliar espeak voices at
    no-speech 0.04-0.07 and log-prob -1.04 to -1.15, and a fast one at no-speech
    0.31-0.40 and log-prob -0.63 to -0.90; gibberish (reversed or shuffled speech) at
    no-speech 0.08-0.8 and log-prob -1.04 to -2.3, below -1.2 when under 0.1.)
    """
    if segment.no_speech_prob >= o.no_speech_prob:
        return "no speech"
    if segment.compression_ratio > o.compression_ratio_threshold:
        return "repetitive"
    sure = segment.no_speech_prob < SURE_SPEECH_NO_SPEECH
    floor = o.sure_speech_log_prob_threshold if sure else o.log_prob_threshold
    return "kept" if segment.avg_logprob >= min(floor, o.log_prob_threshold) else "unsure words"
