"""A held reply's first piece, synthesised ahead (providers/tts/ahead.py), on our Piper service.

Pipecat's TTS base and test pipeline with a stand-in Piper voice that records what it was
asked to say. The path through the speculation gate is tested in test_speculative_turns.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from pipecat.frames.frames import (
    Frame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    SystemFrame,
    TTSAudioRawFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.tests.utils import SleepFrame, run_test

from tests.fakes import RecordingPiperVoice
from voicebot.processors.text_clause import speak_first_clause_early
from voicebot.providers.tts.ahead import AheadCounts, FirstPieceAhead
from voicebot.providers.tts.piper import PiperTTSService

RATE = 16000
MIN_WORDS = 4


def _piper(voice: RecordingPiperVoice) -> PiperTTSService:
    tts = PiperTTSService(voice=voice, voice_name="rec")  # type: ignore[arg-type]
    speak_first_clause_early(tts, MIN_WORDS)
    return tts


def _reply(text: str) -> list[Frame]:
    words = text.split(" ")
    pieces = [w if i == 0 else " " + w for i, w in enumerate(words)]
    return [
        LLMFullResponseStartFrame(),
        *(LLMTextFrame(p) for p in pieces),
        LLMFullResponseEndFrame(),
    ]


class Recorder:
    def __init__(self) -> None:
        self.texts: list[str] = []

    async def synthesise_ahead(self, text: str) -> None:
        self.texts.append(text)


@pytest.mark.parametrize(
    "reply",
    [
        "When it is raining, it's best to wear a coat.",
        "Sure, a table for two at seven.",
        "The sky looks blue because air scatters blue light most.",
        "Paris. It is lovely in spring.",
    ],
)
async def test_the_piece_cut_ahead_is_the_one_the_tts_speaks_first(reply: str) -> None:
    recorder = Recorder()
    ahead = FirstPieceAhead(recorder, min_words=MIN_WORDS)
    ahead.reply_started()
    for frame in _reply(reply):
        if isinstance(frame, LLMTextFrame):
            await ahead.held_text(frame.text)
    voice = RecordingPiperVoice(RATE, seconds_per_chunk=0.0)
    await run_test(
        _piper(voice),
        frames_to_send=_reply(reply),
        pipeline_params=PipelineParams(audio_out_sample_rate=RATE),
    )
    assert recorder.texts == [voice.texts[0]], (recorder.texts, voice.texts)


@dataclass
class Ahead(SystemFrame):
    """Stands for the LLM handing a held reply's first piece over."""

    text: str = ""


class HandsAhead(FrameProcessor):
    def __init__(self, tts: PiperTTSService) -> None:
        super().__init__()
        self._tts = tts

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, Ahead):
            await self._tts.synthesise_ahead(frame.text)
            return
        await self.push_frame(frame, direction)


async def _speak(voice: RecordingPiperVoice, frames: list[Frame]) -> tuple[PiperTTSService, int]:
    tts = _piper(voice)
    down, _ = await run_test(
        Pipeline([HandsAhead(tts), tts]),
        frames_to_send=frames,
        pipeline_params=PipelineParams(audio_out_sample_rate=RATE),
    )
    return tts, sum(isinstance(f, TTSAudioRawFrame) for f in down)


async def test_the_reply_that_brings_the_piece_speaks_its_early_audio() -> None:
    voice = RecordingPiperVoice(RATE)
    tts, audio = await _speak(
        voice, [Ahead(text="Paris, France."), SleepFrame(sleep=0.3), *_reply("Paris, France.")]
    )
    assert tts.ahead == AheadCounts(started=1, used=1, dropped=0)
    assert voice.texts == ["Paris, France."] and audio > 0


async def test_a_piece_the_reply_does_not_bring_is_dropped() -> None:
    voice = RecordingPiperVoice(RATE)
    tts, audio = await _speak(
        voice, [Ahead(text="Paris."), SleepFrame(sleep=0.3), *_reply("Lyon is nice.")]
    )
    assert tts.ahead == AheadCounts(started=1, used=0, dropped=1)
    assert voice.texts == ["Paris.", "Lyon is nice."] and audio > 0


async def test_an_interrupted_reply_stops_the_synthesis_it_took() -> None:
    # 40 chunks of 50 ms: the piece takes 2 s to synthesise; the person cuts in at 0.3 s.
    voice = RecordingPiperVoice(RATE, chunks_per_text=40)
    tts, audio = await _speak(
        voice,
        [
            Ahead(text="Paris, France."),
            *_reply("Paris, France."),
            SleepFrame(sleep=0.3),
            InterruptionFrame(),
            SleepFrame(sleep=2.5),
        ],
    )
    assert tts.ahead.used == 1 and audio > 0
    assert voice.chunks_made < 40, "the taken piece was synthesised to its end"
