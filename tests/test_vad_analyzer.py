"""voicebot's VAD analyzers: Pipecat's decisions, made on the event loop (no thread hand-off)."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADParams, VADState

from voicebot import model_files
from voicebot.audio.energy_vad import EnergyVADAnalyzer
from voicebot.audio.sessions import load_silero_session
from voicebot.audio.silero import SharedSileroVADAnalyzer

CHUNK = 320  # 20 ms at 16 kHz, as clients send it


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """Half a second of silence, a spoken sentence (Piper), then a second of silence."""
    piper = pytest.importorskip("piper")
    import soxr

    voice = piper.PiperVoice.load(model_files.piper_voice_file(model_files.PIPER_JOE_VOICE, None))
    pcm = b"".join(c.audio_int16_bytes for c in voice.synthesize("What time is it in Paris?"))
    audio = np.frombuffer(pcm, np.int16).astype(np.float32) / 32768
    audio = soxr.resample(audio, voice.config.sample_rate, 16000)
    silence = np.zeros(8000, np.float32)
    return (np.concatenate([silence, audio, silence, silence]) * 32767).astype(np.int16)


async def _states(analyzer: Any, pcm: np.ndarray) -> tuple[list[VADState], int]:
    """The state after each 20 ms chunk, and how many chunks went to a thread (executor)."""
    loop = asyncio.get_running_loop()
    real = loop.run_in_executor
    hops = 0

    def counting(executor: Any, func: Any, *args: Any) -> Any:
        nonlocal hops
        hops += 1
        return real(executor, func, *args)

    loop.run_in_executor = counting  # type: ignore[method-assign]
    try:
        analyzer.set_sample_rate(16000)
        states = [
            await analyzer.analyze_audio(pcm[i : i + CHUNK].tobytes())
            for i in range(0, len(pcm), CHUNK)
        ]
    finally:
        del loop.run_in_executor
    return states, hops


async def test_same_decisions_as_pipecat_without_a_thread(speech: np.ndarray) -> None:
    params = VADParams(stop_secs=0.2)
    ours, our_hops = await _states(
        SharedSileroVADAnalyzer(session=load_silero_session(), params=params), speech
    )
    theirs, their_hops = await _states(SileroVADAnalyzer(params=params), speech)

    assert ours == theirs
    assert VADState.SPEAKING in ours and ours[-1] == VADState.QUIET  # it heard the sentence
    assert their_hops == -(-len(speech) // CHUNK)  # Pipecat: one hand-off per chunk
    assert our_hops == 0


async def test_the_energy_vad_decides_without_a_thread(speech: np.ndarray) -> None:
    states, hops = await _states(
        EnergyVADAnalyzer(params=VADParams(stop_secs=0.2, min_volume=0.0)), speech
    )
    assert VADState.SPEAKING in states and states[-1] == VADState.QUIET
    assert hops == 0
