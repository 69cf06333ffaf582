"""Deterministic test speech of known text, and how far a transcript is from that text.

Speech comes from the bundled Piper voice with its sampling noise off, so the same text
is always the same audio; word error rate is jiwer's, after lower-casing and dropping
punctuation on both sides (Whisper punctuates, the reference may not).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import soxr

from voicebot.config import Settings
from voicebot.model_files import piper_voice_file
from voicebot.tools.samples import QUESTIONS

SAMPLE_RATE = 16000
SHORT_TEXT = "Yes, please."
# Long utterances never repeat a sentence: Whisper's compression-ratio filter (rightly)
# drops a transcript that repeats itself, which would score a perfect model as deaf.
SENTENCES = (
    *(q.text for q in QUESTIONS),
    "My sister moved to a small town near the coast last spring.",
    "Please remind me to call the dentist on Thursday morning.",
    "The train to the airport leaves every twenty minutes.",
    "I would like a cup of green tea and a slice of lemon cake.",
    "Our neighbours painted their front door bright yellow.",
    "Turn off the lights in the kitchen before you go to bed.",
    "The museum opens at ten and closes late on Fridays.",
    "He forgot his umbrella at the office again yesterday.",
    "Could you read me the latest news about the football match?",
    "We are planning a picnic by the river if the weather holds.",
    "Set a timer for twelve minutes while the pasta cooks.",
    "The library asked us to return the books by next week.",
)
GAP_S = 0.25
# The Whisper engine caps an utterance at 30 s; stay under it so nothing is cut.
MAX_UTTERANCE_S = 29.5


@dataclass(frozen=True)
class Utterance:
    text: str
    audio: np.ndarray  # float32 mono 16 kHz

    @property
    def seconds(self) -> float:
        return len(self.audio) / SAMPLE_RATE


class SampleSpeech:
    """Speaks texts with the bundled Piper voice (no sampling noise), cached per text."""

    def __init__(self, settings: Settings) -> None:
        from piper import PiperVoice

        piper = settings.tts.piper
        self._voice = PiperVoice.load(piper_voice_file(piper.voice, piper.voice_dir))
        self._cache: dict[str, np.ndarray] = {}

    def say(self, text: str) -> np.ndarray:
        """`text` as float32 mono 16 kHz."""
        from piper.config import SynthesisConfig

        if text not in self._cache:
            fixed = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
            chunks = list(self._voice.synthesize(text, syn_config=fixed))
            pcm = np.frombuffer(b"".join(c.audio_int16_bytes for c in chunks), np.int16)
            audio = pcm.astype(np.float32) / 32768
            rate = self._voice.config.sample_rate
            self._cache[text] = soxr.resample(audio, rate, SAMPLE_RATE).astype(np.float32)
        return self._cache[text]

    def utterance(self, target_s: float) -> Utterance:
        """About `target_s` of speech: one short reply, or whole distinct sentences in turn."""
        if target_s <= 1.5:
            return Utterance(SHORT_TEXT, self.say(SHORT_TEXT))
        gap = np.zeros(int(GAP_S * SAMPLE_RATE), np.float32)
        texts: list[str] = []
        pieces: list[np.ndarray] = []
        total = 0.0
        while total < target_s:
            if len(texts) == len(SENTENCES):
                break
            text = SENTENCES[len(texts)]
            audio = self.say(text)
            if texts and total + GAP_S + len(audio) / SAMPLE_RATE > MAX_UTTERANCE_S:
                break
            if texts:
                pieces.append(gap)
                total += GAP_S
            texts.append(text)
            pieces.append(audio)
            total += len(audio) / SAMPLE_RATE
        return Utterance(" ".join(texts), np.concatenate(pieces))

    def questions(self) -> list[Utterance]:
        return [Utterance(q.text, self.say(q.text)) for q in QUESTIONS]


def word_error_rate(reference: str, hypothesis: str) -> float:
    """jiwer's WER, case and punctuation ignored (1.0 for an empty transcript)."""
    import jiwer

    normalise = jiwer.Compose(
        [
            jiwer.ToLowerCase(),
            jiwer.RemovePunctuation(),
            jiwer.RemoveMultipleSpaces(),
            jiwer.Strip(),
            jiwer.ReduceToListOfListOfWords(),
        ]
    )
    if not hypothesis.strip():
        return 1.0
    return round(
        float(
            jiwer.wer(
                reference,
                hypothesis,
                reference_transform=normalise,
                hypothesis_transform=normalise,
            )
        ),
        4,
    )


def leading_silence_ms(pcm16: bytes, sample_rate: int, threshold_dbfs: float = -40.0) -> float:
    """How long the audio stays below `threshold_dbfs` before the first sound."""
    samples = np.abs(np.frombuffer(pcm16, np.int16).astype(np.int32))
    loud = np.flatnonzero(samples > 32767 * 10 ** (threshold_dbfs / 20))
    first = int(loud[0]) if loud.size else len(samples)
    return round(1000 * first / sample_rate, 1)


def to_16k(pcm16: bytes, sample_rate: int) -> np.ndarray:
    audio = np.frombuffer(pcm16, np.int16).astype(np.float32) / 32768
    return np.asarray(soxr.resample(audio, sample_rate, SAMPLE_RATE), dtype=np.float32)
