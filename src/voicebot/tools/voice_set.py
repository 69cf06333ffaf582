"""Utterances spoken by voices voicebot was never tuned on, for the turn-latency benchmark.

espeak-ng voices (accents, speeds, a female variant), the bundled Piper voice with its
sampling noise on, and two of the bundled Kokoro voices (Japanese voices reading
English, one of them faster), saying questions, statements, requests, and sentences with
a pause in the middle ("I'd like to book a table for ... four people"). Each text belongs
to one half: `tune` (thresholds may be adjusted on it) or `heldout` (figures are
reported on it and nothing is tuned on it). Generated at run time, never stored.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from voicebot.errors import InputError

if TYPE_CHECKING:
    import numpy as np
    from kokoro_onnx import Kokoro

Half = Literal["tune", "heldout"]
Kind = Literal["question", "statement", "request", "paused"]


@dataclass(frozen=True)
class Utterance:
    name: str
    text: str
    kind: Kind
    half: Half
    # Words after the pause (paused utterances): a reply before them is a cut-off.
    after_pause: str = ""


# A "|" marks a 700 ms pause inside the sentence.
_TEXTS: tuple[tuple[str, Kind], ...] = (
    ("Where is the nearest train station?", "question"),
    ("Could you recommend a good book about history?", "question"),
    ("My sister is visiting us next weekend.", "statement"),
    ("I think it is going to snow tonight.", "statement"),
    ("Please set an alarm for seven in the morning.", "request"),
    ("Tell me something funny, please!", "request"),
    ("I'd like to book a table for | four people.", "paused"),
    ("Can you remind me to call | my dentist tomorrow?", "paused"),
    ("What time does the museum open on Sundays?", "question"),
    ("How long should I boil pasta?", "question"),
    ("We painted the kitchen a bright yellow.", "statement"),
    ("The meeting was moved to Thursday afternoon.", "statement"),
    ("Play some quiet music for studying.", "request"),
    ("Send a message to Anna saying I am late.", "request"),
    ("I need a gift for | my grandfather's birthday.", "paused"),
    ("Remind me what the weather | will be like on Friday.", "paused"),
)

# (id, espeak-ng voice, words per minute); "piper" is the bundled voice with its noise on.
VOICES: tuple[tuple[str, str, int], ...] = (
    ("espeak-us", "en-us", 165),
    ("espeak-gb-slow", "en-gb", 140),
    ("espeak-scottish", "en-gb-scotland", 170),
    ("espeak-rp-female", "en-gb-x-rp+f3", 160),
    ("espeak-us-fast", "en-us+m3", 195),
    ("piper-noisy", "piper", 0),
)
# (id, "kokoro:" + bundled Kokoro voice, speed in percent): each text's third voice.
KOKORO_VOICES: tuple[tuple[str, str, int], ...] = (
    ("kokoro-male", "kokoro:jm_kumo", 100),
    ("kokoro-female-fast", "kokoro:jf_nezumi", 115),
)


def utterances() -> list[tuple[Utterance, str]]:
    """Every (utterance, voice id) pair: each text in two of `VOICES` and one of
    `KOKORO_VOICES`; texts alternate halves."""
    pairs = []
    for i, (text, kind) in enumerate(_TEXTS):
        half: Half = "tune" if i % 2 == 0 else "heldout"
        after = text.split("|", 1)[1].strip() if "|" in text else ""
        # Pairs of texts (one per half) alternate the Kokoro voices, the other way round
        # in the second half of the list: each kind gets both voices in each half.
        kokoro = KOKORO_VOICES[(i // 2 + i // 8) % len(KOKORO_VOICES)]
        for voice in (VOICES[i % len(VOICES)], VOICES[(i + 3) % len(VOICES)], kokoro):
            name = f"{i:02d}-{voice[0]}"
            pairs.append((Utterance(name, text, kind, half, after), voice[0]))
    return pairs


def synthesise(folder: Path, half: Half | None = None) -> list[tuple[Utterance, str, Path]]:
    """Write the set (or one half of it) as WAV files into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    voices = {v[0]: v for v in VOICES + KOKORO_VOICES}
    out = []
    for utterance, voice_id in utterances():
        if half is not None and utterance.half != half:
            continue
        path = folder / f"{utterance.name}.wav"
        if not path.exists():
            _, voice, speed = voices[voice_id]
            speak(utterance.text, voice, speed, path)
        out.append((utterance, voice_id, path))
    # The benchmark measures servers next to this process: it keeps no voice loaded.
    _kokoro_model.cache_clear()
    return out


def speak(text: str, voice: str, speed: int, path: Path) -> None:
    """Write `text` said by an espeak-ng voice ("piper": the bundled Piper voice;
    "kokoro:<voice>": a bundled Kokoro voice at `speed` percent) to `path`."""
    if voice == "piper":
        _piper(text, path)
    elif voice.startswith("kokoro:"):
        _kokoro(text, voice.removeprefix("kokoro:"), speed / 100, path)
    else:
        _espeak(text, voice, speed, path)


def _espeak(text: str, voice: str, speed: int, path: Path) -> None:
    binary = shutil.which("espeak-ng")
    if binary is None:
        raise InputError(
            "the unseen-voice set needs espeak-ng: apt-get install espeak-ng "
            "(or use the bundled samples: voicebot bench turn --voices samples)"
        )
    ssml = "<speak>" + text.replace("|", '<break time="700ms"/>') + "</speak>"
    subprocess.run(
        [binary, "-m", "-v", voice, "-s", str(speed), "-w", str(path), ssml],
        check=True,
        capture_output=True,
    )


def _piper(text: str, path: Path) -> None:
    import numpy as np
    import soundfile as sf
    from piper import PiperVoice
    from piper.config import SynthesisConfig

    from voicebot.config import Settings
    from voicebot.model_files import piper_voice_file

    piper = Settings().tts.piper
    voice = PiperVoice.load(piper_voice_file(piper.voice, piper.voice_dir))
    rate = voice.config.sample_rate
    # Sampling noise on (unlike the test samples): every run sounds slightly different.
    varied = SynthesisConfig(noise_scale=0.8, noise_w_scale=0.9, length_scale=1.05)
    parts = []
    for piece in text.split("|"):
        pcm = b"".join(c.audio_int16_bytes for c in voice.synthesize(piece.strip(), varied))
        parts.append(np.frombuffer(pcm, np.int16))
        parts.append(np.zeros(int(0.7 * rate), np.int16))
    sf.write(path, np.concatenate(parts[:-1]), rate, subtype="PCM_16")


def _kokoro(text: str, voice: str, speed: float, path: Path) -> None:
    import numpy as np
    import soundfile as sf

    kokoro = _kokoro_model()
    if voice not in kokoro.voices:
        raise InputError(f"{voice!r} is not a bundled Kokoro voice ({', '.join(kokoro.voices)})")
    parts, rate = [], 24000
    for piece in text.split("|"):
        audio, rate = kokoro.create(piece.strip(), voice=voice, lang="en-us", speed=speed)
        parts.append(_without_edge_silence(audio))
        # The pause is 700 ms of silence between the words, as in the other voices.
        parts.append(np.zeros(int(0.7 * rate), np.float32))
    sf.write(path, np.concatenate(parts[:-1]), rate, subtype="PCM_16")


@functools.cache
def _kokoro_model() -> Kokoro:
    from voicebot.config import Settings

    try:
        from voicebot.providers.tts import kokoro

        assert kokoro.SPEC.load is not None
        model: Kokoro = kokoro.SPEC.load(Settings())
        return model
    except ImportError as e:
        raise InputError(
            "the unseen-voice set needs Kokoro: pip install 'voicebot[kokoro]' "
            "(./quick_start.sh installs it)"
        ) from e


def _without_edge_silence(audio: np.ndarray) -> np.ndarray:
    """`audio` (float, -1..1) without the silence Kokoro puts before and after the words."""
    import numpy as np

    from voicebot.audio.pcm import SILENCE_THRESHOLD

    loud = np.flatnonzero(np.abs(audio) * 32767 > SILENCE_THRESHOLD)
    return audio[loud[0] : loud[-1] + 1] if loud.size else audio
