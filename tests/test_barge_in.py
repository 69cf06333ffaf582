"""Barge-in: words over the bot's reply stop it quickly; coughs, clicks and noise do not.

Fast tests: the VAD switch in Pipecat's test pipeline, and the analyzer with its barge-in
params on Pipecat's real VAD state machine over a fake model. Slow tests: the real Silero
model on the bench's recorded intruders, and real sessions through /ws.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pipecat.audio.vad.vad_analyzer import VADParams, VADState
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    InputAudioRawFrame,
    InterruptionFrame,
    VADParamsUpdateFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import (
    LLMContextAggregatorPair,
    LLMUserAggregatorParams,
)
from pipecat.tests.utils import SleepFrame, run_test

from voicebot.audio.barge_in import BargeInVADParams, barge_in_params, speech_band_dbfs
from voicebot.audio.sessions import load_silero_session
from voicebot.audio.silero import SharedSileroVADAnalyzer
from voicebot.bench.barge_in import (
    STORY_REQUEST,
    distant_voice,
    noise_intruders,
    run_barge_in,
    speech_intruders,
)
from voicebot.bench.barge_in_vad import WINDOW_OFFSETS, vad_start_delay
from voicebot.config import BargeInSettings
from voicebot.processors.barge_in import BargeInVADSwitch
from voicebot.protocol import INPUT_SAMPLE_RATE
from voicebot.tools.client import load_pcm16k
from voicebot.tools.local_server import LocalServer
from voicebot.tools.voice_set import speak

NORMAL = VADParams(confidence=0.7, start_secs=0.2, stop_secs=0.2, min_volume=0.6)
# The shipped defaults.
BARGE_IN = barge_in_params(
    NORMAL,
    start_secs=BargeInSettings().start_secs,
    start_confidence=BargeInSettings().start_confidence,
    min_level_dbfs=BargeInSettings().min_level_dbfs,
)
CHUNK = INPUT_SAMPLE_RATE // 50  # 20 ms, as clients send it


# --- the switch ---------------------------------------------------------------------


async def _switches(*frames: Any) -> list[VADParams]:
    _, up = await run_test(
        BargeInVADSwitch(normal=NORMAL, barge_in=BARGE_IN), frames_to_send=list(frames)
    )
    return [f.params for f in up if isinstance(f, VADParamsUpdateFrame)]


async def test_the_vad_listens_for_barge_in_only_while_the_bot_speaks() -> None:
    assert await _switches(BotStartedSpeakingFrame(), BotStoppedSpeakingFrame()) == [
        BARGE_IN,
        NORMAL,
    ]


async def test_the_barge_in_params_keep_how_a_turn_ends() -> None:
    assert isinstance(BARGE_IN, BargeInVADParams)
    assert (BARGE_IN.confidence, BARGE_IN.stop_secs) == (NORMAL.confidence, NORMAL.stop_secs)
    assert BARGE_IN.start_secs < NORMAL.start_secs


async def test_no_switch_while_the_person_speaks() -> None:
    # The person cut the bot off: its speech must not restart the VAD mid-word, so the
    # normal params wait for the end of that speech.
    interrupted = (
        BotStartedSpeakingFrame(),
        VADUserStartedSpeakingFrame(),
        BotStoppedSpeakingFrame(),
    )
    assert await _switches(*interrupted) == [BARGE_IN]
    assert await _switches(*interrupted, VADUserStoppedSpeakingFrame()) == [BARGE_IN, NORMAL]


# --- the analyzer --------------------------------------------------------------------


class _FakeSilero:
    """An ONNX session standing in for Silero: it hears speech in any sound at all, with
    the confidence the test sets."""

    def __init__(self, confidence: float) -> None:
        self.confidence = confidence

    def run(self, _outputs: Any, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        return [np.array([[self.confidence]], dtype=np.float32), inputs["state"]]


def _tone(dbfs: float, seconds: float, hz: float = 1000.0) -> np.ndarray:
    """A sine at `dbfs` RMS; 1 kHz, in a voice's band, unless told otherwise."""
    t = np.arange(int(seconds * INPUT_SAMPLE_RATE)) / INPUT_SAMPLE_RATE
    amplitude = 10 ** (dbfs / 20) * math.sqrt(2)  # a sine's RMS is its peak / sqrt(2)
    return (np.sin(2 * np.pi * hz * t) * amplitude * 32767).astype(np.int16)


def _fooled_analyzer(params: VADParams, confidence: float = 1.0) -> SharedSileroVADAnalyzer:
    return SharedSileroVADAnalyzer(session=_FakeSilero(confidence), params=params)  # type: ignore[arg-type]


async def test_barge_in_params_start_speech_after_their_window_not_the_volume_lag() -> None:
    voice = _tone(-25.0, 1.0)
    barge_in = await vad_start_delay(_fooled_analyzer(BARGE_IN), voice)
    normal = await vad_start_delay(_fooled_analyzer(NORMAL), voice)
    assert barge_in is not None and normal is not None
    # Three 32 ms windows, give or take the last 20 ms chunk...
    assert barge_in <= BARGE_IN.start_secs + 0.032 + 0.02
    # ...where the normal params wait for Pipecat's smoothed volume to rise past 0.6.
    assert normal > NORMAL.start_secs + 0.032


async def test_a_quiet_sound_never_interrupts_even_if_the_model_hears_speech() -> None:
    assert await vad_start_delay(_fooled_analyzer(BARGE_IN), _tone(-55.0, 1.0)) is None


def test_the_floor_reads_the_speech_band_only() -> None:
    window = 512
    assert speech_band_dbfs(_tone(-20.0, 0.1, hz=1000.0)[:window].tobytes(), 16000) == (
        pytest.approx(-20.0, abs=0.5)
    )
    # A loud 200 Hz tone leaks nothing into the band through the Hann taper.
    assert speech_band_dbfs(_tone(-10.0, 0.1, hz=200.0)[:window].tobytes(), 16000) < -60.0
    assert speech_band_dbfs(b"", 16000) == -math.inf


async def test_a_mains_hum_never_interrupts_even_if_the_model_hears_speech() -> None:
    # Silero scored this hum's onset 0.96-0.98 when it started 222-233 samples into a
    # window, and so stopped the bot; its harmonics (50-350 Hz) are below the speech band.
    hum = noise_intruders()["noise-hum"]
    for lead in WINDOW_OFFSETS:
        assert await vad_start_delay(_fooled_analyzer(BARGE_IN), hum, lead) is None, lead
    # The normal params have no floor: there the same model takes it for speech.
    assert await vad_start_delay(_fooled_analyzer(NORMAL), hum) is not None


async def test_an_unsure_sound_does_not_start_speech_but_does_not_end_it_either() -> None:
    # Silero scores the onset of a hum up to ~0.9: enough for a normal turn, not to interrupt.
    voice = _tone(-25.0, 1.0)
    assert await vad_start_delay(_fooled_analyzer(BARGE_IN, confidence=0.9), voice) is None
    session = _FakeSilero(1.0)
    analyzer = SharedSileroVADAnalyzer(session=session, params=BARGE_IN)  # type: ignore[arg-type]
    assert await vad_start_delay(analyzer, voice) is not None
    # Once speech has started, `confidence` (0.7) decides, as in any turn.
    session.confidence = 0.9
    for offset in range(0, voice.size, CHUNK):
        state = await analyzer.analyze_audio(voice[offset : offset + CHUNK].tobytes())
        assert state == VADState.SPEAKING


async def test_the_floor_follows_the_params_the_switch_sends() -> None:
    analyzer = _fooled_analyzer(NORMAL)
    analyzer.set_sample_rate(INPUT_SAMPLE_RATE)
    quiet, loud = (_tone(dbfs, 0.032)[:512].tobytes() for dbfs in (-55.0, -25.0))
    assert analyzer.voice_confidence(quiet) == 1.0
    analyzer.set_params(BARGE_IN)
    assert (analyzer.voice_confidence(quiet), analyzer.voice_confidence(loud)) == (0.0, 1.0)
    analyzer.set_params(NORMAL)
    assert analyzer.voice_confidence(quiet) == 1.0


async def test_while_the_bot_speaks_the_user_aggregator_starts_turns_on_the_barge_in_window() -> (
    None
):
    # Pipecat's own user aggregator runs the VAD; the switch after it sends the params up.
    aggregator = LLMContextAggregatorPair(
        LLMContext(),
        user_params=LLMUserAggregatorParams(vad_analyzer=_fooled_analyzer(NORMAL)),
    ).user()
    switch = BargeInVADSwitch(normal=NORMAL, barge_in=BARGE_IN)
    voice = _tone(-25.0, 0.3)
    chunks = [
        InputAudioRawFrame(voice[i : i + CHUNK].tobytes(), INPUT_SAMPLE_RATE, 1)
        for i in range(0, voice.size, CHUNK)
    ]
    down, up = await run_test(
        Pipeline([aggregator, switch]),
        frames_to_send=[BotStartedSpeakingFrame(), SleepFrame(0.2), *chunks, SleepFrame(0.2)],
    )
    started = [f for f in up if isinstance(f, VADUserStartedSpeakingFrame)]
    assert [f.start_secs for f in started] == [BARGE_IN.start_secs]
    assert any(isinstance(f, InterruptionFrame) for f in down)
    assert switch.switches == 1


# --- the real model on the bench's intruders ------------------------------------------


@pytest.fixture(scope="module")
def intruders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    folder = tmp_path_factory.mktemp("intruders")
    return {**speech_intruders(folder), **noise_intruders(), **distant_voice(folder)}


@pytest.mark.slow
async def test_silero_with_barge_in_params_hears_words_sooner_and_noise_never(
    intruders: dict[str, np.ndarray],
) -> None:
    session = load_silero_session()
    for name, pcm in intruders.items():
        for lead in WINDOW_OFFSETS:
            barge_in = await vad_start_delay(
                SharedSileroVADAnalyzer(session=session, params=BARGE_IN), pcm, lead
            )
            normal = await vad_start_delay(
                SharedSileroVADAnalyzer(session=session, params=NORMAL), pcm, lead
            )
            if name.startswith("noise"):
                # (The normal params themselves take a hum's onset for speech at some offsets.)
                assert barge_in is None, (name, lead)
            else:
                assert barge_in is not None and normal is not None, (name, lead)
                assert barge_in < normal, (name, lead)


# --- through /ws -----------------------------------------------------------------------


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


@pytest.mark.parametrize("noise", ["noise-cough", "noise-white-burst", "noise-typing", "noise-hum"])
async def test_noise_over_the_reply_does_not_stop_it(
    server: LocalServer, story_request: np.ndarray, noise: str
) -> None:
    result = await run_barge_in(server.ws_url, story_request, noise_intruders()[noise], noise)
    assert not result.interrupted, result.events
    assert "user_started_speaking" not in result.events
