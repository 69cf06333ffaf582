"""STT sections: Whisper model x compute type x utterance length, and the batch-size sweep.

Every model is loaded through the same `load_engine` a server uses, so the figures are
the shared engine's (its speech gate, its batching queue). Models are never downloaded:
the bundled tiny.en and base always, others from `stt.whisper.models_dir`.
"""

from __future__ import annotations

import asyncio
import gc
import json
import statistics
import time
from dataclasses import replace
from typing import Any

from voicebot.bench.report import MemorySampler, median, percentile, skipped, variant
from voicebot.bench.speech import SampleSpeech, word_error_rate
from voicebot.config import Settings
from voicebot.model_files import whisper_on_disk
from voicebot.providers.stt.whisper import load_engine
from voicebot.providers.stt.whisper_engine import WhisperEngine

MODELS = ("tiny.en", "base", "small", "medium", "large-v3", "large-v3-turbo")
COMPUTE_TYPES = ("int8", "float16", "bfloat16")
LENGTHS_S = (1, 3, 5, 10, 20, 29)
BATCH_SIZES = (1, 2, 4, 8, 16)


def _unsupported(device: str, compute_type: str) -> str | None:
    """Why `compute_type` cannot run on `device` here, or None when it can."""
    if device == "cpu" and compute_type in ("float16", "bfloat16"):
        return f"{compute_type} is a GPU precision: run with --device cuda on a GPU"
    import ctranslate2

    supported = ctranslate2.get_supported_compute_types(device)
    if compute_type not in supported:
        return f"ctranslate2 supports only {', '.join(sorted(supported))} on {device} here"
    return None


def _load(settings: Settings) -> tuple[WhisperEngine, float]:
    start = time.perf_counter()
    engine = load_engine(settings)
    load_s = time.perf_counter() - start
    engine.warm()
    return engine, round(load_s, 2)


async def _lengths(
    engine: WhisperEngine, speech: SampleSpeech, lengths: tuple[float, ...], repeats: int
) -> list[dict[str, Any]]:
    rows = []
    for target in lengths:
        utterance = speech.utterance(target)
        runs = [await engine.transcribe(utterance.audio) for _ in range(repeats)]
        rows.append(
            {
                "target_s": target,
                "audio_s": round(utterance.seconds, 2),
                "latency_ms": median([r.elapsed_ms for r in runs]),
                "rtf": median([r.rtf for r in runs]),
                "wer": word_error_rate(utterance.text, runs[0].text),
                "reference": utterance.text,
                "transcript": runs[0].text,
            }
        )
    return rows


async def model_section(
    settings: Settings,
    speech: SampleSpeech,
    *,
    models: tuple[str, ...],
    compute_types: tuple[str, ...],
    lengths: tuple[float, ...],
    repeats: int,
) -> dict[str, Any]:
    """One row per model x compute type: load time, memory, and latency/RTF/WER by length."""
    device = settings.stt.whisper.device
    rows: list[dict[str, Any]] = []
    for model in models:
        for compute_type in compute_types:
            identity = {"model": model, "compute_type": compute_type, "device": device}
            if not whisper_on_disk(model, settings):
                where = settings.stt.whisper.models_dir or "stt.whisper.models_dir (unset)"
                rows.append(skipped(f"not bundled and not in {where}", **identity))
                continue
            reason = _unsupported(device, compute_type)
            if reason:
                rows.append(skipped(reason, **identity))
                continue
            chosen = variant(
                settings,
                {"stt": {"whisper": {"model": model, "compute_type": compute_type}}},
            )
            with MemorySampler() as memory:
                engine, load_s = await asyncio.to_thread(_load, chosen)
                by_length = await _lengths(engine, speech, lengths, repeats)
            engine.close()
            row = {
                **identity,
                **engine.description,
                "load_s": load_s,
                "memory": memory.summary(),
                "wer": median([r["wer"] for r in by_length]),
                "rtf": median([r["rtf"] for r in by_length]),
                "lengths": by_length,
            }
            rows.append(row)
            del engine
            gc.collect()
            print(json.dumps({"stt": {k: v for k, v in row.items() if k != "lengths"}}), flush=True)
    return {"device": device, "repeats": repeats, "rows": rows}


async def batch_section(
    settings: Settings,
    speech: SampleSpeech,
    *,
    batch_sizes: tuple[int, ...],
    repeats: int,
    autotune: dict[str, Any],
) -> dict[str, Any]:
    """N utterances at once through one shared engine: throughput and latency per N."""
    questions = speech.questions()
    with MemorySampler() as memory:
        engine, _ = await asyncio.to_thread(_load, settings)
        rows = []
        for size in batch_sizes:
            engine.options = replace(engine.options, max_batch_size=size)
            walls, latencies, calls = [], [], 0
            audio_s = sum(questions[i % len(questions)].seconds for i in range(size))
            for _ in range(repeats):
                before = engine.stats.model_calls
                start = time.perf_counter()
                results = await asyncio.gather(
                    *(engine.transcribe(questions[i % len(questions)].audio) for i in range(size))
                )
                walls.append(time.perf_counter() - start)
                latencies += [r.elapsed_ms for r in results]
                calls += engine.stats.model_calls - before
            wall = statistics.median(walls)
            rows.append(
                {
                    "batch_size": size,
                    "audio_s": round(audio_s, 2),
                    "wall_s": round(wall, 3),
                    "audio_s_per_s": round(audio_s / wall, 2),
                    "latency_p50_ms": percentile(latencies, 0.5),
                    "latency_p90_ms": percentile(latencies, 0.9),
                    "model_calls_per_round": round(calls / repeats, 1),
                }
            )
            print(json.dumps({"batch": rows[-1]}), flush=True)
    engine.close()
    return {
        **engine.description,
        "repeats": repeats,
        "autotune": autotune,
        "memory": memory.summary(),
        "rows": rows,
    }
