"""TTS benchmark: time to first audio, real-time factor and sample rate per provider, on this host.

    .venv/bin/python -m tests.benchmark.bench_tts --output bench-results/tts.json

Piper and Kokoro run for real (Kokoro on CUDA with `--device cuda` where a GPU exists).
Edge runs the real edge-tts client and our MP3 decoding against the local stand-in
server (tests/servers/edge.py), so its figures show our side only, not Microsoft's.
Each figure is the median of `--repeats` runs through the same TTS stage a session uses.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
from pathlib import Path
from typing import Any

import edge_tts
import numpy as np
import soxr

from tests.servers.edge import edge_server
from voicebot.config import Settings
from voicebot.models import SharedModels
from voicebot.tools.bench import report_header, write_report
from voicebot.tools.speak import speak

TEXTS = {
    "short": "Sure.",
    "sentence": "Paris is the capital of France.",
    "long": "When it is raining, it is best to wear a waterproof coat and boots, "
    "and to carry a small umbrella in your bag.",
}


async def measure(settings: Settings, voices: SharedModels, repeats: int) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for name, text in TEXTS.items():
        runs = [await speak(settings, voices, text) for _ in range(repeats)]
        rows[name] = {
            "ttfb_ms": round(statistics.median(r.ttfb_ms or 0 for r in runs), 1),
            "rtf": round(statistics.median(r.summary()["rtf"] or 0 for r in runs), 4),
            "audio_s": round(statistics.median(r.audio_s for r in runs), 2),
            "sample_rate": runs[0].sample_rate,
        }
        print(json.dumps({settings.tts.provider: {name: rows[name]}}), flush=True)
    return rows


async def run(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for provider in ("piper", "kokoro"):
        settings = Settings(
            tts={"provider": provider, "device": args.device, "first_clause_words": 0}
        )
        voices = SharedModels.load(settings, stages=("tts",))
        await speak(settings, voices, "Warm up.")
        results[provider] = await measure(settings, voices, args.repeats)

    piper = SharedModels.load(Settings(tts={"provider": "piper"}), stages=("tts",)).model(
        "tts", "piper"
    )
    assert piper is not None

    def local_speech(text: str) -> np.ndarray:
        pcm = b"".join(c.audio_int16_bytes for c in piper.synthesize(text))
        audio = np.frombuffer(pcm, np.int16).astype(np.float32) / 32768
        return (soxr.resample(audio, piper.config.sample_rate, 24000) * 32767).astype(np.int16)

    async with edge_server(local_speech) as server:
        edge_tts.communicate.WSS_URL = server.url
        settings = Settings(tts={"provider": "edge", "first_clause_words": 0})
        results["edge (local stand-in)"] = await measure(
            settings, SharedModels.load(settings, stages=("tts",)), args.repeats
        )

    return {
        **report_header("tts"),
        "device": args.device,
        "repeats": args.repeats,
        "providers": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", type=Path, default=Path("bench-results/tts.json"))
    args = parser.parse_args()
    report = asyncio.run(run(args))
    write_report(args.output, report)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
