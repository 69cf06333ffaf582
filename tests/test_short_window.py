"""Whisper's encoder sees a shorter window than its 30 s when `stt.whisper.encoder_window_secs`
says so: which frames are kept, and (slow) the real model's words and speed with it."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest
from faster_whisper import WhisperModel
from faster_whisper.audio import pad_or_trim

from tests.helpers import tweak_whisper, words
from voicebot.autotune import encoder_window
from voicebot.config import Settings
from voicebot.providers.stt.short_window import (
    ShortWindowWhisperModel,
    audio_frames,
    window_frames,
)
from voicebot.providers.stt.whisper import load_engine


def _padded(audio_secs: float) -> np.ndarray:
    """Log-mel-like features of `audio_secs`, padded with zeros as faster-whisper does."""
    frames = round(audio_secs * 100)
    rng = np.random.default_rng(1)
    features = rng.uniform(-1.0, 1.0, (80, frames)).astype(np.float32)
    return np.asarray(pad_or_trim(features), dtype=np.float32)


def test_the_audio_ends_where_the_zero_padding_starts() -> None:
    assert audio_frames(_padded(2.0)) == 200
    assert audio_frames(_padded(2.0)[None]) == 200  # a batch of one
    assert audio_frames(np.zeros((80, 3000), np.float32)) == 0


@pytest.mark.parametrize(
    ("audio_secs", "window_secs", "kept"),
    [
        (2.0, 15.0, 1500),  # a short question: the window
        (7.0, 15.0, 1700),  # longer audio keeps 10 s of padding after it
        (25.0, 15.0, 3000),  # never more than Whisper's window
        (2.01, 10.0, 1202),  # an even number of frames (the encoder halves them)
    ],
)
def test_the_window_kept(audio_secs: float, window_secs: float, kept: int) -> None:
    assert window_frames(_padded(audio_secs), window_secs) == kept


def test_a_batch_keeps_the_window_of_its_longest_clip() -> None:
    batch = np.stack([_padded(2.0), _padded(9.0)])
    assert window_frames(batch, 15.0) == 1900


def test_the_window_must_be_10_to_30_seconds_or_auto() -> None:
    with pytest.raises(ValueError, match="encoder_window_secs"):
        Settings.model_validate({"stt": {"whisper": {"encoder_window_secs": 5}}})
    with pytest.raises(ValueError, match="encoder_window_secs"):
        Settings.model_validate({"stt": {"whisper": {"encoder_window_secs": "short"}}})
    assert Settings().stt.whisper.encoder_window_secs == 30.0
    assert (
        Settings.model_validate(
            {"stt": {"whisper": {"encoder_window_secs": "auto"}}}
        ).stt.whisper.encoder_window_secs
        == "auto"
    )


def test_auto_is_15_seconds_for_tiny_on_the_cpu_and_whispers_30_otherwise() -> None:
    assert encoder_window("auto", "cpu", "tiny.en") == 15.0
    assert encoder_window("auto", "cpu", "tiny") == 15.0
    assert encoder_window("auto", "cpu", "base") == 30.0  # misheard bundled questions at 15 s
    assert encoder_window("auto", "cuda", "tiny.en") == 30.0
    assert encoder_window(20.0, "cuda", "large-v3") == 20.0  # a number is kept anywhere


def test_auto_gives_the_engine_the_window_of_its_model_and_device(settings: Settings) -> None:
    engine = load_engine(tweak_whisper(settings, encoder_window_secs="auto"))
    try:
        assert isinstance(engine.model, ShortWindowWhisperModel)
        tiny_on_cpu = engine.description["device"] == "cpu" and "tiny" in settings.stt.whisper.model
        assert engine.model.window_secs == (15.0 if tiny_on_cpu else 30.0)
    finally:
        engine.close()


@pytest.mark.slow
async def test_a_15_second_window_hears_the_same_words_sooner(
    settings: Settings,
    question_pcm: dict[str, np.ndarray],
    keywords: dict[str, tuple[str, ...]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The real tiny.en on the bundled questions: the same key words with either window,
    no repetition, and the encoder really was given fewer frames."""
    encoded: list[int] = []
    encode = WhisperModel.encode

    def spy(self: WhisperModel, features: np.ndarray) -> Any:
        encoded.append(int(features.shape[-1]))
        return encode(self, features)

    monkeypatch.setattr(WhisperModel, "encode", spy)
    results: dict[float, list[str]] = {}
    seconds: dict[float, float] = {}
    for window in (30.0, 15.0):
        engine = load_engine(tweak_whisper(settings, encoder_window_secs=window))
        engine.warm()
        assert isinstance(engine.model, ShortWindowWhisperModel)
        started = time.perf_counter()
        results[window] = [
            (await engine.transcribe(pcm.astype(np.float32) / 32768.0)).text
            for pcm in question_pcm.values()
        ]
        seconds[window] = time.perf_counter() - started
        engine.close()
    for name, short, full in zip(question_pcm, results[15.0], results[30.0], strict=True):
        assert set(keywords[name]) <= words(short), (short, full)
        # One question, not the question repeated until the token limit.
        assert len(short.split()) <= len(full.split()) + 2, (short, full)
    assert set(encoded) == {3000, 1500}
    print(f"\n5 questions: 30 s window {seconds[30.0]:.2f} s, 15 s window {seconds[15.0]:.2f} s")
