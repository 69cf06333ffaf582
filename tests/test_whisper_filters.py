"""Whisper's hallucination filters: drop gibberish, keep real speech in unfamiliar voices."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from voicebot.models import SharedModels
from voicebot.providers.stt.whisper_decode import Heard, WhisperDecoder, judge, keeps
from voicebot.providers.stt.whisper_engine import EngineOptions, EngineStats
from voicebot.tools.client import load_pcm16k
from voicebot.tools.voice_set import speak

OPTIONS = EngineOptions()  # the defaults stt.whisper.* resolves to


def _segment(
    no_speech: float, log_prob: float, compression: float = 0.8, text: str = " Some words."
) -> SimpleNamespace:
    return SimpleNamespace(
        no_speech_prob=no_speech, avg_logprob=log_prob, compression_ratio=compression, text=text
    )


@pytest.mark.parametrize(
    ("no_speech", "log_prob"),
    [
        (0.066, -1.043),  # "Send a message to Anna ...", slow British espeak (tiny.en)
        (0.037, -1.146),  # the same in US espeak
        (0.2, -0.3),  # a clear transcript
        # "We painted the kitchen ...", fast US espeak: 0.31-0.40 offline; with the old
        # 0.4 limit the server dropped it and the turn went unanswered.
        (0.396, -0.626),
        (0.328, -0.905),
    ],
)
def test_speech_whisper_is_sure_of_is_kept_despite_unsure_words(
    no_speech: float, log_prob: float
) -> None:
    assert keeps(_segment(no_speech, log_prob), OPTIONS)


@pytest.mark.parametrize(
    ("no_speech", "log_prob", "compression"),
    [
        (0.075, -1.328, 0.8),  # reversed speech read as "Initiates near fissuring that 0"
        (0.209, -1.037, 0.8),  # reversed speech read as "Yell, may I ask any of you ..."
        (0.366, -1.089, 0.9),  # reversed speech, not sure it is speech
        (0.7, -0.7, 0.7),  # "Thank you." over noise: likely non-speech
        (0.05, -0.2, 3.1),  # a repetition loop
    ],
)
def test_hallucinations_are_dropped(no_speech: float, log_prob: float, compression: float) -> None:
    assert not keeps(_segment(no_speech, log_prob, compression), OPTIONS)


def test_each_dropped_segment_says_why() -> None:
    assert judge(_segment(0.2, -0.3), OPTIONS) == "kept"
    assert judge(_segment(0.7, -0.7), OPTIONS) == "no speech"
    assert judge(_segment(0.05, -0.2, 3.1), OPTIONS) == "repetitive"
    assert judge(_segment(0.344, -1.047), OPTIONS) == "unsure words"


def _heard(*segments: SimpleNamespace) -> Heard:
    decoder = WhisperDecoder(SimpleNamespace(), OPTIONS, EngineStats())  # type: ignore[arg-type]
    return decoder._join(list(segments))


@pytest.mark.parametrize(
    ("segments", "heard"),
    [
        # "Please set an alarm for seven in the morning", slow British espeak, offline.
        ([_segment(0.344, -1.047, text=" Please, please, turn the alarm for 7.")], Heard("", True)),
        ([_segment(0.7, -0.7, text=" Thank you.")], Heard("", False)),  # noise
        ([_segment(0.05, -0.2, 3.1)], Heard("", False)),  # a repetition loop
        ([_segment(0.3, -1.1, text=" ")], Heard("", False)),  # no words at all
        ([], Heard("", False)),
        # Words kept beside a dropped segment: the words are what was said.
        ([_segment(0.2, -0.3, text=" Hello."), _segment(0.3, -1.1)], Heard("Hello.", False)),
    ],
)
def test_speech_whose_words_were_all_dropped_is_unclear(
    segments: list[SimpleNamespace], heard: Heard
) -> None:
    assert _heard(*segments) == heard


def test_the_sure_speech_floor_never_drops_more_than_the_plain_one() -> None:
    stricter = EngineOptions(log_prob_threshold=-1.5, sure_speech_log_prob_threshold=-1.2)
    assert keeps(_segment(0.05, -1.3), stricter)


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")
async def test_an_unfamiliar_voice_is_heard_and_its_gibberish_is_not(
    models: SharedModels, tmp_path: Path
) -> None:
    path = tmp_path / "anna.wav"
    speak("Send a message to Anna saying I am late.", "en-gb", 140, path)
    speech = load_pcm16k(path).astype(np.float32) / 32768
    padded = np.concatenate([speech, np.zeros(8000, np.float32)])
    heard = await models.stt.transcribe(padded)
    assert "message" in heard.text.lower()
    assert not heard.unclear
    backwards = np.concatenate([speech[::-1], np.zeros(8000, np.float32)])
    gibberish = await models.stt.transcribe(backwards)
    # Speech Whisper cannot make out: no words, and the bot will ask to repeat.
    assert gibberish.text == "" and gibberish.unclear
    quiet = np.random.default_rng(0).normal(0, 0.002, 24000).astype(np.float32)
    assert not (await models.stt.transcribe(quiet)).unclear
