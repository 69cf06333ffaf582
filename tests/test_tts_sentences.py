"""A reply spoken by a local voice is one audio context, however slow its sentences come.

Pipecat's TTSService ends an audio context after 3 s without audio (its default
`stop_frame_timeout_s`). On a loaded CPU Piper and Kokoro take longer than that for a
sentence; the reply then "stopped" (a TTSStoppedFrame, an error "completed with no audio")
before its audio played. The real Piper and Kokoro services run here with voices that
answer late; each test takes a few seconds because the lateness is real.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from pipecat.frames.frames import (
    ErrorFrame,
    Frame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TTSAudioRawFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
    TTSTextFrame,
)
from pipecat.pipeline.worker import PipelineParams
from pipecat.services.tts_service import TTSService
from pipecat.tests.utils import run_test

from voicebot.providers.tts.kokoro import SharedKokoroTTSService
from voicebot.providers.tts.piper import PiperTTSService

# The voices are really late: each test takes seconds of real time.
pytestmark = pytest.mark.slow

RATE = 16000
SENTENCES = ["Hello there.", "The table is booked for seven.", "Enjoy your dinner."]
# Later than Pipecat's default 3 s idle limit.
LATE_S = 3.3


def _sentence_audio(text: str) -> np.ndarray:
    """A tone whose length and pitch say which sentence it is (100 ms a word)."""
    t = np.arange(int(0.1 * len(text.split()) * RATE)) / RATE
    return 0.3 * np.sin(2 * np.pi * (200 + 20 * len(text)) * t)


@dataclass
class _Chunk:
    audio_int16_bytes: bytes


class LatePiperVoice:
    """Stands in for a `PiperVoice`: `synthesize` streams chunks after `delays[text]` s, or
    raises for the texts in `fails` (as onnxruntime or espeak would)."""

    def __init__(self, delays: dict[str, float], fails: Sequence[str] = ()) -> None:
        self.config = type("Config", (), {"sample_rate": RATE})()
        self._delays = delays
        self._fails = set(fails)

    def synthesize(self, text: str) -> Iterator[_Chunk]:
        time.sleep(self._delays.get(text, 0.0))  # runs on a worker thread, as Piper does
        if text in self._fails:
            raise RuntimeError(f"cannot phonemize {text!r}")
        pcm = (_sentence_audio(text) * 32767).astype(np.int16).tobytes()
        half = len(pcm) // 4 * 2
        yield _Chunk(pcm[:half])
        yield _Chunk(pcm[half:])


class LateKokoro:
    """Stands in for `kokoro_onnx.Kokoro`: `create` answers after `delays[text]` s."""

    def __init__(self, delays: dict[str, float]) -> None:
        self.voices = {"af_test": None}
        self.tokenizer = self
        self._delays = delays

    def phonemize(self, text: str, _lang: str) -> str:
        return text

    def create(self, phonemes: str, **_: Any) -> tuple[np.ndarray, int]:
        time.sleep(self._delays.get(phonemes, 0.0))
        return _sentence_audio(phonemes).astype(np.float32), RATE


def reply(sentences: Sequence[str]) -> list[Frame]:
    """One LLM reply, streamed word by word."""
    words = " ".join(sentences).split(" ")
    return [
        LLMFullResponseStartFrame(),
        *(LLMTextFrame(w + " ") for w in words),
        LLMFullResponseEndFrame(),
    ]


async def _speak(tts: TTSService, frames: list[Frame]) -> tuple[list[Frame], list[Frame]]:
    down, up = await run_test(
        tts, frames_to_send=frames, pipeline_params=PipelineParams(audio_out_sample_rate=RATE)
    )
    return list(down), list(up)


def _audio_seconds(frames: list[Frame]) -> float:
    return sum(len(f.audio) for f in frames if isinstance(f, TTSAudioRawFrame)) / 2 / RATE


def _check_one_unbroken_reply(down: list[Frame], up: list[Frame], sentences: list[str]) -> None:
    spoken = [f.text.strip() for f in down if isinstance(f, TTSTextFrame)]
    assert spoken == sentences
    expected_s = sum(len(_sentence_audio(s)) for s in sentences) / RATE
    assert _audio_seconds(down) == pytest.approx(expected_s, abs=0.01)
    kinds = [type(f) for f in down if isinstance(f, (TTSStartedFrame, TTSStoppedFrame))]
    assert kinds == [TTSStartedFrame, TTSStoppedFrame], "the reply was reported over mid-way"
    last_audio = max(i for i, f in enumerate(down) if isinstance(f, TTSAudioRawFrame))
    stop = next(i for i, f in enumerate(down) if isinstance(f, TTSStoppedFrame))
    assert stop > last_audio
    assert not [f.error for f in up if isinstance(f, ErrorFrame)]


async def test_piper_sentences_later_than_three_seconds_stay_in_their_reply() -> None:
    # The first sentence's audio comes 3.3 s after it was asked for; so does the third's.
    voice = LatePiperVoice({SENTENCES[0]: LATE_S, SENTENCES[2]: LATE_S})
    tts = PiperTTSService(voice=voice, voice_name="late")  # type: ignore[arg-type]
    down, up = await _speak(tts, reply(SENTENCES))
    _check_one_unbroken_reply(down, up, SENTENCES)


async def test_kokoro_first_sentence_later_than_three_seconds_is_spoken() -> None:
    kokoro = LateKokoro({SENTENCES[0]: LATE_S})
    tts = SharedKokoroTTSService(kokoro=kokoro, voice="af_test")  # type: ignore[arg-type]
    down, up = await _speak(tts, reply(SENTENCES[:2]))
    _check_one_unbroken_reply(down, up, SENTENCES[:2])


async def test_a_reply_whose_last_sentence_fails_ends_with_the_reply() -> None:
    """Pipecat would leave that reply's context open for the whole idle limit, and the next
    reply's audio would wait behind it: with a 60 s limit, this test would fail after 60 s."""
    voice = LatePiperVoice({}, fails=[SENTENCES[1]])
    tts = PiperTTSService(voice=voice, voice_name="late", stop_frame_timeout_s=60)  # type: ignore[arg-type]
    frames = [*reply(SENTENCES[:2]), *reply(SENTENCES[2:])]
    down, up = await asyncio.wait_for(_speak(tts, frames), timeout=30)
    assert [f.text.strip() for f in down if isinstance(f, TTSTextFrame)] == SENTENCES
    kinds = [type(f) for f in down if isinstance(f, (TTSStartedFrame, TTSStoppedFrame))]
    assert kinds == [TTSStartedFrame, TTSStoppedFrame] * 2
    assert [f.error for f in up if isinstance(f, ErrorFrame)] == [
        f"Piper synthesis failed: cannot phonemize {SENTENCES[1]!r}"
    ]
