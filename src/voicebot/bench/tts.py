"""TTS section: time to first audio, RTF, leading silence and intelligibility per provider.

Every provider runs through the session's TTS stage (`voicebot say`'s code, trimming
included). Intelligibility is a Whisper round trip: the audio is transcribed by the
shared engine and scored by word error rate against the text. Edge runs against the
local stand-in (`tests/servers/edge.py`, a source checkout only) unless `edge="live"`;
its figures then show our client and MP3 decoding, not Microsoft's service. Azure runs
live only when AZURE_SPEECH_KEY is set.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import soxr

from voicebot.bench.report import MemorySampler, median, skipped, variant
from voicebot.bench.speech import leading_silence_ms, to_16k, word_error_rate
from voicebot.config import Settings
from voicebot.errors import ProviderError, VoicebotError
from voicebot.models import SharedModels
from voicebot.providers.stt.whisper_engine import WhisperEngine
from voicebot.tools.speak import speak

TEXTS = {
    "short": "Sure.",
    "sentence": "Paris is the capital of France.",
    "long": "When it is raining, it is best to wear a waterproof coat and boots, "
    "and to carry a small umbrella in your bag.",
}
PROVIDERS = ("piper", "kokoro", "edge", "azure")
EDGE_STANDIN = Path(__file__).resolve().parents[3] / "tests" / "servers" / "edge.py"


def _standin_module() -> Any:
    spec = importlib.util.spec_from_file_location("voicebot_bench_edge_standin", EDGE_STANDIN)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@asynccontextmanager
async def _edge_standin(settings: Settings) -> AsyncIterator[str]:
    """The Edge stand-in on a loopback port, speaking with the Piper voice; yields a note."""
    import edge_tts

    standin = _standin_module()
    piper = SharedModels.load(variant(settings, {"tts": {"provider": "piper"}}), stages=("tts",))
    voice = piper.model("tts", "piper")
    assert voice is not None

    def local_speech(text: str) -> np.ndarray:
        pcm = b"".join(c.audio_int16_bytes for c in voice.synthesize(text))
        audio = np.frombuffer(pcm, np.int16).astype(np.float32) / 32768
        resampled = soxr.resample(audio, voice.config.sample_rate, 24000)
        return np.asarray(resampled * 32767, dtype=np.int16)

    # edge-tts reads its endpoint from this module constant at each connection.
    original = getattr(edge_tts.communicate, "WSS_URL")  # noqa: B009
    async with standin.edge_server(local_speech) as server:
        setattr(edge_tts.communicate, "WSS_URL", server.url)  # noqa: B010
        try:
            yield "local stand-in (Piper speech behind Edge's protocol): our side only"
        finally:
            setattr(edge_tts.communicate, "WSS_URL", original)  # noqa: B010


async def _measure(
    settings: Settings,
    engine: WhisperEngine,
    texts: dict[str, str],
    repeats: int,
) -> dict[str, Any]:
    voices = SharedModels.load(settings, stages=("tts",))
    await speak(settings, voices, "Hello, this is a warm-up.")
    rows: list[dict[str, Any]] = []
    for name, text in texts.items():
        runs = [await speak(settings, voices, text) for _ in range(repeats)]
        if not all(r.audio for r in runs):
            raise ProviderError(f"{settings.tts.provider} produced no audio for {text!r}")
        heard = await engine.transcribe(to_16k(runs[0].audio, runs[0].sample_rate))
        rows.append(
            {
                "name": name,
                "text": text,
                "ttfb_ms": median([r.ttfb_ms or 0.0 for r in runs]),
                "rtf": median([r.summary()["rtf"] or 0.0 for r in runs]),
                "audio_s": median([r.audio_s for r in runs]),
                "leading_silence_ms": median(
                    [leading_silence_ms(r.audio, r.sample_rate) for r in runs]
                ),
                "wer": word_error_rate(text, heard.text),
                "transcript": heard.text,
            }
        )
    first = runs[0]
    return {
        "voice": first.voice,
        "sample_rate": first.sample_rate,
        "ttfb_ms": median([r["ttfb_ms"] for r in rows]),
        "rtf": median([r["rtf"] for r in rows]),
        "leading_silence_ms": median([r["leading_silence_ms"] for r in rows]),
        "wer": median([r["wer"] for r in rows]),
        "texts": rows,
    }


async def tts_section(
    settings: Settings,
    engine: WhisperEngine,
    *,
    providers: tuple[str, ...],
    texts: dict[str, str],
    repeats: int,
    edge: str = "standin",
) -> dict[str, Any]:
    """One row per provider; those that cannot run here are rows with the reason."""
    rows: list[dict[str, Any]] = []
    for provider in providers:
        chosen = variant(
            settings, {"tts": {"provider": provider, "fallback": None, "first_clause_words": 0}}
        )
        note = "runs on this machine"
        if provider == "azure" and chosen.secrets.azure_speech_key is None:
            reason = "AZURE_SPEECH_KEY is not set (there is no local Azure stand-in)"
            rows.append(skipped(reason, provider=provider))
            continue
        if provider == "azure":
            note = "live Azure service"
        standin = provider == "edge" and edge == "standin"
        if standin and not EDGE_STANDIN.is_file():
            reason = f"the Edge stand-in ({EDGE_STANDIN}) is only in a source checkout"
            rows.append(skipped(f"{reason}; use --edge live", provider=provider))
            continue
        try:
            with MemorySampler() as memory:
                if standin:
                    async with _edge_standin(settings) as note:
                        row = await _measure(chosen, engine, texts, repeats)
                else:
                    note = "live Microsoft Edge service" if provider == "edge" else note
                    row = await _measure(chosen, engine, texts, repeats)
        except (VoicebotError, ImportError, OSError) as e:
            rows.append(skipped(f"could not run: {e}", provider=provider))
            continue
        rows.append({"provider": provider, "note": note, **row, "memory": memory.summary()})
        print(json.dumps({"tts": {k: v for k, v in rows[-1].items() if k != "texts"}}), flush=True)
    return {"device": settings.tts.device, "repeats": repeats, "rows": rows}
