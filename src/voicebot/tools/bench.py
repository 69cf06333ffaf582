"""`voicebot bench turn`: turn latency over spoken questions through /ws, written as JSON."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from voicebot.config import Settings
from voicebot.providers import spec as providers
from voicebot.providers.spec import STAGES
from voicebot.tools.client import load_pcm16k, run_turn
from voicebot.tools.local_server import LocalServer
from voicebot.tools.samples import QUESTIONS, synthesise_questions


def report_header(benchmark: str) -> dict[str, Any]:
    """The fields every benchmark report starts with: what, when, and on what machine."""
    return {
        "benchmark": benchmark,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
    }


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu_model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu_model,
        "cpu_count": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "gpu": None,
    }


def write_report(path: Path, data: dict[str, Any]) -> None:
    """Write a benchmark's JSON report, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def summarise(turns: list[dict[str, Any]]) -> dict[str, Any]:
    latencies = [t["turn_latency_ms"] for t in turns if t["turn_latency_ms"] is not None]
    stages: dict[str, list[float]] = {}
    for turn in turns:
        for name, value in turn["stages"].items():
            stages.setdefault(name, []).append(value)
    return {
        "turns": len(turns),
        "turn_latency_ms": {
            "median": statistics.median(latencies) if latencies else None,
            "p90": percentile(latencies, 0.9),
            "min": min(latencies, default=None),
            "max": max(latencies, default=None),
        },
        "stages_median_ms": {k: round(statistics.median(v), 1) for k, v in sorted(stages.items())},
    }


async def run_turn_bench(settings: Settings, turns: int, output: Path, url: str | None) -> int:
    """Run `turns` spoken turns (cycling the sample questions) and write the results to `output`."""
    folder = Path(tempfile.mkdtemp(prefix="voicebot-bench-"))
    paths = synthesise_questions(folder, settings)
    audio = {q.name: load_pcm16k(paths[q.name]) for q in QUESTIONS}
    process = psutil.Process()
    results: list[dict[str, Any]] = []

    async def measure(ws_url: str) -> tuple[float, float]:
        cpu_start, wall_start = process.cpu_times(), time.perf_counter()
        for i in range(turns):
            question = QUESTIONS[i % len(QUESTIONS)]
            result = await run_turn(ws_url, audio[question.name])
            results.append({"question": question.text, **result.summary()})
            print(json.dumps(results[-1]), flush=True)
        cpu_end = process.cpu_times()
        cpu_s = (cpu_end.user - cpu_start.user) + (cpu_end.system - cpu_start.system)
        return cpu_s, time.perf_counter() - wall_start

    server_process: dict[str, Any]
    if url:
        await measure(url)
        server_process = {"note": "external server: RSS and CPU not measured"}
    else:
        async with LocalServer(settings) as server:
            cpu_s, wall_s = await measure(server.ws_url)
        server_process = {
            "rss_mib": round(process.memory_info().rss / 2**20, 1),
            "cpu_percent_of_one_core": round(100 * cpu_s / wall_s, 1),
            "note": "server and client share this process",
        }
    report = {
        **report_header("turn"),
        # What each stage actually ran: the chosen providers and their models or voices.
        "config": {
            stage: " + ".join(
                f"{s.id} {s.describe(settings)}" for s in providers.chosen(settings, stage)
            )
            for stage in STAGES
        },
        "summary": summarise(results),
        "server_process": server_process,
        "turns": results,
    }
    await asyncio.to_thread(write_report, output, report)
    print(json.dumps(report["summary"], indent=2))
    return 0
