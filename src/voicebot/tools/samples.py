"""Spoken sample questions, synthesised with the bundled Piper voice, for benchmarks and tests."""

from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path

from voicebot.config import Settings
from voicebot.model_files import piper_voice_file


@dataclass(frozen=True)
class SampleQuestion:
    name: str
    text: str
    keywords: tuple[str, ...]


QUESTIONS = (
    SampleQuestion("capital", "What is the capital of France?", ("capital", "france")),
    SampleQuestion("week", "How many days are there in a week?", ("days", "week")),
    SampleQuestion("sky", "Why is the sky blue?", ("sky", "blue")),
    SampleQuestion("cook", "Can you tell me how to boil an egg?", ("boil", "egg")),
    SampleQuestion("weather", "What should I wear when it is raining?", ("wear", "raining")),
)


def synthesise_questions(folder: Path, settings: Settings | None = None) -> dict[str, Path]:
    """Write one WAV per sample question into `folder` (skipping existing ones)."""
    from piper import PiperVoice
    from piper.config import SynthesisConfig

    # Without the model's sampling noise the same text always gives the same audio, so
    # tests and benchmarks are repeatable.
    fixed = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)

    folder.mkdir(parents=True, exist_ok=True)
    voice = None
    paths: dict[str, Path] = {}
    for question in QUESTIONS:
        path = folder / f"{question.name}.wav"
        if not path.exists():
            piper = (settings or Settings()).tts.piper
            voice = voice or PiperVoice.load(piper_voice_file(piper.voice, piper.voice_dir))
            with wave.open(str(path), "wb") as out:
                voice.synthesize_wav(question.text, out, syn_config=fixed)
        paths[question.name] = path
    return paths
