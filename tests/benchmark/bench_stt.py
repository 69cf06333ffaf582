"""STT benchmark: latency by utterance length and model, batched vs one-by-one throughput, RTF.

    .venv/bin/python -m tests.benchmark.bench_stt --output bench-results/stt.json
    .venv/bin/python -m tests.benchmark.bench_stt --models tiny.en base large-v3-turbo \\
        --device cuda --compute-type float16 --models-dir /models/whisper

Utterances are the sample questions spoken by the bundled Piper voice, concatenated to
reach each length. Every figure is the median of `--repeats` runs. On a GPU, the VRAM
in use after each model loads is read from NVML.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from voicebot.config import Settings
from voicebot.providers.stt.whisper import load_engine
from voicebot.providers.stt.whisper_engine import WhisperEngine
from voicebot.tools.bench import report_header, write_report
from voicebot.tools.client import load_pcm16k
from voicebot.tools.samples import synthesise_questions

LENGTHS_S = (1, 2, 4, 8, 16, 28)
STREAMS = (1, 4, 8, 16)


def speech_of_length(questions: list[np.ndarray], seconds: float) -> np.ndarray:
    pieces, total = [], 0
    while total < seconds * 16000:
        piece = questions[len(pieces) % len(questions)]
        pieces.append(piece)
        total += len(piece)
    return np.concatenate(pieces)[: int(seconds * 16000)]


def vram_used_mib() -> int | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        return int(pynvml.nvmlDeviceGetMemoryInfo(handle).used) // 2**20
    except Exception:  # no NVML here: VRAM is simply not reported
        return None


async def latency_by_length(
    engine: WhisperEngine, questions: list[np.ndarray], repeats: int
) -> list[dict[str, Any]]:
    rows = []
    for seconds in LENGTHS_S:
        audio = speech_of_length(questions, seconds)
        runs = [await engine.transcribe(audio) for _ in range(repeats)]
        rows.append(
            {
                "utterance_s": seconds,
                "latency_ms": statistics.median(r.elapsed_ms for r in runs),
                "rtf": statistics.median(r.rtf for r in runs),
            }
        )
        print(json.dumps({"length": rows[-1]}), flush=True)
    return rows


async def throughput(
    engine: WhisperEngine, questions: list[np.ndarray], repeats: int
) -> list[dict[str, Any]]:
    rows = []
    for streams in STREAMS:
        row: dict[str, Any] = {"streams": streams}
        for mode, batch in (("one_by_one", 1), ("batched", 16)):
            engine.options = type(engine.options)(
                **{**engine.options.__dict__, "max_batch_size": batch}
            )
            walls, latencies = [], []
            for _ in range(repeats):
                audio = [questions[i % len(questions)] for i in range(streams)]
                start = time.perf_counter()
                results = await asyncio.gather(*(engine.transcribe(a) for a in audio))
                walls.append(time.perf_counter() - start)
                latencies.append(statistics.mean(r.elapsed_ms for r in results))
            audio_s = sum(len(questions[i % len(questions)]) for i in range(streams)) / 16000
            wall = statistics.median(walls)
            row[mode] = {
                "wall_s": round(wall, 3),
                "audio_s_per_s": round(audio_s / wall, 2),
                "mean_latency_ms": round(statistics.median(latencies), 1),
            }
        row["batched_speedup"] = round(row["one_by_one"]["wall_s"] / row["batched"]["wall_s"], 2)
        print(json.dumps({"throughput": row}), flush=True)
        rows.append(row)
    return rows


async def run(args: argparse.Namespace) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="voicebot-stt-bench-"))
    questions = [
        load_pcm16k(p).astype(np.float32) / 32768 for p in synthesise_questions(folder).values()
    ]
    results: dict[str, Any] = {}
    for model in args.models:
        settings = Settings(
            stt={
                "whisper": {
                    "model": model,
                    "models_dir": args.models_dir,
                    "device": args.device,
                    "compute_type": args.compute_type,
                    "batch_size": 16,
                }
            }
        )
        before = vram_used_mib()
        start = time.perf_counter()
        engine = load_engine(settings)
        load_s = time.perf_counter() - start
        engine.warm()
        after = vram_used_mib()
        entry: dict[str, Any] = {
            **engine.description,
            "load_s": round(load_s, 2),
            "vram_mib": after - before if before is not None and after is not None else None,
            "latency_by_length": await latency_by_length(engine, questions, args.repeats),
            "throughput": await throughput(engine, questions, args.repeats),
        }
        entry["rtf_median"] = statistics.median(row["rtf"] for row in entry["latency_by_length"])
        results[model] = entry
    return {
        **report_header("stt"),
        "repeats": args.repeats,
        "models": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=["tiny.en", "base"])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--compute-type", default="int8")
    parser.add_argument("--models-dir", type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, default=Path("bench-results/stt.json"))
    args = parser.parse_args()
    report = asyncio.run(run(args))
    write_report(args.output, report)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
