"""A reply's first audio gets the CPU: Piper holds local LLMs while it makes the first chunk.

The priority object is tested with real threads; the Piper service with a stand-in voice
that records whether LLMs were held while each of its chunks was made, over two replies
in Pipecat's own test pipeline.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from pipecat.frames.frames import (
    Frame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
)
from pipecat.pipeline.worker import PipelineParams
from pipecat.tests.utils import run_test

from voicebot.config import Settings
from voicebot.providers.tts.piper import PiperTTSService
from voicebot.threads import FirstAudioPriority

RATE = 16000


def test_an_llm_thread_waits_while_first_audio_is_made_and_no_longer() -> None:
    priority = FirstAudioPriority(max_wait_s=10.0)
    started = time.perf_counter()
    priority.wait()  # idle: no wait at all
    assert time.perf_counter() - started < 5.0
    resumed = threading.Event()

    def generate() -> None:
        priority.wait()
        resumed.set()

    with priority.synthesising():
        assert priority.busy
        thread = threading.Thread(target=generate)
        thread.start()
        assert not resumed.wait(0.3), "the LLM went on while first audio was being made"
    assert resumed.wait(5.0), "the LLM was not released when the first audio was done"
    thread.join()
    assert not priority.busy


def test_the_wait_is_bounded_so_a_stuck_synthesis_never_stalls_the_llm() -> None:
    priority = FirstAudioPriority(max_wait_s=0.2)
    with priority.synthesising():
        started = time.perf_counter()
        priority.wait()
        assert time.perf_counter() - started >= 0.2


def test_nested_syntheses_hold_until_the_last_ends() -> None:
    priority = FirstAudioPriority()
    with priority.synthesising():
        with priority.synthesising():
            pass
        assert priority.busy
    assert not priority.busy


@dataclass
class _Chunk:
    audio_int16_bytes: bytes


class RecordingVoice:
    """Stands in for a `PiperVoice`: two chunks a sentence, noting if LLMs were held."""

    def __init__(self, priority: FirstAudioPriority) -> None:
        self.config = type("Config", (), {"sample_rate": RATE})()
        self.held: list[tuple[str, int, bool]] = []
        self._priority = priority

    def synthesize(self, text: str) -> Iterator[_Chunk]:
        tone = (0.3 * np.sin(np.arange(1600) / 5) * 32767).astype(np.int16).tobytes()
        for n in range(2):
            self.held.append((text, n, self._priority.busy))
            yield _Chunk(tone)


def _reply(*sentences: str) -> list[Frame]:
    words = " ".join(sentences).split(" ")
    return [
        LLMFullResponseStartFrame(),
        *(LLMTextFrame(w + " ") for w in words),
        LLMFullResponseEndFrame(),
    ]


async def test_piper_holds_llms_only_for_each_replys_first_chunk() -> None:
    priority = FirstAudioPriority()
    voice = RecordingVoice(priority)
    tts = PiperTTSService(voice=voice, voice_name="rec", first_audio=priority)  # type: ignore[arg-type]
    frames = [*_reply("Hello there.", "How are you?"), *_reply("Fine, thanks.")]
    await run_test(
        tts, frames_to_send=frames, pipeline_params=PipelineParams(audio_out_sample_rate=RATE)
    )
    assert voice.held == [
        ("Hello there.", 0, True),
        ("Hello there.", 1, False),
        ("How are you?", 0, False),
        ("How are you?", 1, False),
        ("Fine, thanks.", 0, True),
        ("Fine, thanks.", 1, False),
    ]
    assert not priority.busy


def test_only_a_cpu_piper_takes_the_priority() -> None:
    from voicebot.providers.tts.piper import SPEC

    voice = RecordingVoice(FirstAudioPriority())
    for settings, expected in (
        (Settings(tts={"device": "cpu"}), True),
        (Settings(tts={"device": "cpu", "first_audio_priority": False}), False),
        (Settings(tts={"device": "cuda"}), False),
    ):
        tts = SPEC.build(settings, voice)
        assert (tts._first_audio is not None) is expected, settings.tts
