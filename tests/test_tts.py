"""TTS with the real bundled voices: intelligible, no lead-in silence, first clause early."""

from __future__ import annotations

import re

import numpy as np
import soxr
from pipecat.frames.frames import (
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TTSAudioRawFrame,
    TTSTextFrame,
)
from pipecat.pipeline.worker import PipelineParams
from pipecat.tests.utils import run_test
from pipecat.utils.text.base_text_aggregator import TextType

from voicebot.models import SharedModels
from voicebot.processors.text_clause import FirstClauseTextAggregator, speak_first_clause_early
from voicebot.processors.tts_piper import PiperTTSService


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z']+", text.lower()))


def reply_frames(text: str) -> list[object]:
    """A reply as the LLM streams it: word by word between start and end frames."""
    tokens = [LLMTextFrame(t + " ") for t in text.split(" ")]
    return [LLMFullResponseStartFrame(), *tokens, LLMFullResponseEndFrame()]


def leading_silence_ms(audio: np.ndarray, rate: int) -> float:
    loud = np.flatnonzero(np.abs(audio.astype(np.int32)) > 1000)
    return 1000 * loud[0] / rate if loud.size else float("inf")


async def _speak(
    models: SharedModels, text: str, *, first_clause_words: int = 0
) -> tuple[list[str], np.ndarray, int]:
    tts = PiperTTSService(voice=models.piper, voice_name="en_US-joe-medium")
    if first_clause_words:
        speak_first_clause_early(tts, first_clause_words)
    rate = models.piper.config.sample_rate
    down, _ = await run_test(
        tts,
        frames_to_send=reply_frames(text),
        pipeline_params=PipelineParams(audio_out_sample_rate=rate),
    )
    texts = [f.text for f in down if isinstance(f, TTSTextFrame)]
    audio = np.frombuffer(
        b"".join(f.audio for f in down if isinstance(f, TTSAudioRawFrame)), np.int16
    )
    return texts, audio, rate


async def test_piper_speaks_intelligibly_without_lead_in_silence(models: SharedModels) -> None:
    _, audio, rate = await _speak(models, "The weather is sunny today. Enjoy your walk.")
    # Piper alone starts with ~40-50 ms of silence; trimmed, 10 ms of lead-in are left.
    assert leading_silence_ms(audio, rate) < 30
    heard = models.stt.model.transcribe(
        soxr.resample(audio.astype(np.float32) / 32768, rate, 16000), language="en", beam_size=1
    )[0]
    assert {"weather", "sunny", "walk"} <= words(" ".join(s.text for s in heard))


async def test_long_first_sentence_starts_at_its_first_clause(models: SharedModels) -> None:
    reply = "When it is raining outside, it is best to wear a coat and boots. Stay dry."
    texts, _, _ = await _speak(models, reply, first_clause_words=4)
    assert texts[0].startswith("When it is raining outside,") and "coat" not in texts[0]
    whole, _, _ = await _speak(models, reply)
    assert "coat" in whole[0]  # without it, the first piece is the whole sentence


async def test_first_clause_rules() -> None:
    async def pieces(text: str, min_words: int = 4) -> list[str]:
        aggregator = FirstClauseTextAggregator(
            min_words=min_words, aggregation_type=TextType.SENTENCE
        )
        out = []
        for token in text.split(" "):
            async for piece in aggregator.aggregate(token + " "):
                out.append(piece.text)
        rest = await aggregator.flush()
        return out + ([rest.text] if rest else [])

    assert await pieces("Yes, I can. Sure, fine.") == [
        "Yes, I can.",
        "Sure, fine.",
    ]  # too short to cut
    assert await pieces("We sold more than 1,000 books, then we stopped.") == [
        "We sold more than 1,000 books,",
        "then we stopped.",
    ]
    assert await pieces("First part of it, second. Third part of it, fourth.") == [
        "First part of it,",
        "second.",
        "Third part of it, fourth.",  # only the first piece of a reply is cut
    ]
