"""Barge-in through /ws with the real models: words stop the bot, noises do not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from voicebot.bench.barge_in import (
    STORY_REQUEST,
    noise_intruders,
    run_barge_in,
    speech_intruders,
)
from voicebot.tools.client import load_pcm16k
from voicebot.tools.local_server import LocalServer
from voicebot.tools.voice_set import speak


@pytest.fixture(scope="module")
def story_request(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    path = tmp_path_factory.mktemp("barge") / "request.wav"
    speak(STORY_REQUEST, "piper", 0, path)
    return load_pcm16k(path)


async def test_words_over_the_reply_stop_it(
    server: LocalServer, story_request: np.ndarray, tmp_path: Path
) -> None:
    words = speech_intruders(tmp_path, voices=("piper",))["speech-piper"]
    result = await run_barge_in(server.ws_url, story_request, words, "speech-piper")
    assert result.interrupted, result.events
    assert result.stop_latency_ms is not None
    # The bot went quiet long before the reply would have ended by itself.
    assert result.audio_after_onset_s < 2.0
    assert "user_started_speaking" in result.events


@pytest.mark.parametrize("noise", ["noise-cough", "noise-white-burst", "noise-typing"])
async def test_noise_over_the_reply_does_not_stop_it(
    server: LocalServer, story_request: np.ndarray, noise: str
) -> None:
    result = await run_barge_in(server.ws_url, story_request, noise_intruders()[noise], noise)
    assert not result.interrupted, result.events
    assert "user_started_speaking" not in result.events
