"""`voicebot bench turn` and the suite's turn section: turn latency through /ws, per stage."""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from voicebot.bench.report import percentile, report_header, write_report
from voicebot.config import Settings
from voicebot.observability.turn_timeline import gaps
from voicebot.providers import spec as providers
from voicebot.providers.spec import STAGES
from voicebot.tools import voice_set
from voicebot.tools.client import TurnResult, load_pcm16k, playback_gaps, run_turn
from voicebot.tools.local_server import LocalServer
from voicebot.tools.samples import QUESTIONS, synthesise_questions


def summarise(turns: list[dict[str, Any]]) -> dict[str, Any]:
    latencies = [t["turn_latency_ms"] for t in turns if t["turn_latency_ms"] is not None]
    stages: dict[str, list[float]] = {}
    for turn in turns:
        for name, value in turn["stages"].items():
            stages.setdefault(name, []).append(value)
    summary: dict[str, Any] = {
        "turns": len(turns),
        "turn_latency_ms": {
            "median": statistics.median(latencies) if latencies else None,
            "p90": percentile(latencies, 0.9),
            "min": min(latencies, default=None),
            "max": max(latencies, default=None),
        },
        "stages_median_ms": {k: round(statistics.median(v), 1) for k, v in sorted(stages.items())},
        # The server's view: when each step happened after the last voiced audio it
        # received, and the time between consecutive steps (where the latency goes).
        "server_timeline_median_ms": _medians(t.get("server_timeline_ms", {}) for t in turns),
        "server_gaps_median_ms": _medians(gaps(t.get("server_timeline_ms", {})) for t in turns),
        "turns_with_playback_gaps": sum(t.get("playback_gap_ms", 0) > 0 for t in turns),
    }
    if turns and "waited_for_max_silence" in turns[0]:
        summary["waited_for_max_silence"] = sum(t["waited_for_max_silence"] for t in turns)
        summary["cut_off"] = sum(t["cut_off"] for t in turns)
        summary["paused_cut_off"] = sum(t["cut_off"] for t in turns if t.get("kind") == "paused")
        summary["paused"] = sum(t.get("kind") == "paused" for t in turns)
    return summary


def _medians(rows: Iterable[dict[str, float]]) -> dict[str, float]:
    """The median of each key over `rows`, in the order the keys first appear."""
    values: dict[str, list[float]] = {}
    for row in rows:
        for key, value in row.items():
            values.setdefault(key, []).append(value)
    return {key: round(statistics.median(v), 1) for key, v in values.items()}


def turn_record(result: TurnResult, max_silence_secs: float) -> dict[str, Any]:
    """What one turn tells about turn-taking, besides its latency.

    waited_for_max_silence: the LLM started only once the silence limit ran out (the
    first audio minus the LLM's and TTS's first-output times is past the limit).
    cut_off: the bot began answering before the person's last words were transcribed, or
    the server ended the turn more than once in one utterance (`turn_ends`: it took the
    words before a pause as a turn of their own, even when no audio of that reply was
    heard before the person finished).
    """
    summary = result.summary()
    stages, latency = result.stages, result.turn_latency_ms
    llm_started = None
    if latency is not None:
        llm_started = latency - stages.get("llm_ttft_ms", 0) - stages.get("tts_ttfb_ms", 0)
    kinds = [e["type"] for e in result.events]
    last_transcript = max((i for i, k in enumerate(kinds) if k == "transcript"), default=-1)
    first_reply = next((i for i, k in enumerate(kinds) if k == "bot_started_speaking"), None)
    turn_ends = kinds.count("user_stopped_speaking")
    return {
        **summary,
        "llm_started_after_ms": None if llm_started is None else round(llm_started, 1),
        "waited_for_max_silence": llm_started is not None
        and llm_started >= max_silence_secs * 1000 - 100,
        "cut_off": (first_reply is not None and first_reply < last_transcript) or turn_ends > 1,
        "turn_ends": turn_ends,
        "timeline_ms": timeline(result),
        "server_timeline_ms": result.server_timeline_ms,
        # Reply audio that came later than a player would play it (e.g. a short first
        # clause played out before the next piece was synthesised).
        "playback_gap_ms": round(
            1000 * playback_gaps(result.audio_arrivals, result.sample_rate)[0]
        ),
    }


def timeline(result: TurnResult) -> dict[str, float | None]:
    """When each step of the reply happened, ms after the last voiced sample was sent.

    Read from the arrival of the server's events (loopback: no network delay):
    vad_stop (user_stopped_speaking), stt (the final transcript), llm_first_token (the
    LLM's time-to-first-token metrics event, sent at its first token), first_clause (the
    TTS's time-to-first-byte event minus that time: when the first clause reached the
    TTS), tts_first_audio (the first bot audio: the turn latency). None when not seen.
    """
    timed = [
        (event, ms)
        for event, ms in zip(result.events, result.event_ms, strict=False)
        if ms >= -1.0  # events of an earlier pause in the same utterance are not this turn's
    ]

    def first(kind: str, stage: str | None = None) -> tuple[dict[str, Any], float] | None:
        for event, ms in timed:
            if event["type"] != kind or not event.get("final", True):
                continue
            if stage is None or (event["stage"] == stage and "ttfb_ms" in event):
                return event, ms
        return None

    vad, stt, llm, tts = (
        first("user_stopped_speaking"),
        first("transcript"),
        first("metrics", "llm"),
        first("metrics", "tts"),
    )
    latency = result.turn_latency_ms
    return {
        "vad_stop": None if vad is None else vad[1],
        "stt": None if stt is None else stt[1],
        "llm_first_token": None if llm is None else llm[1],
        "first_clause": None if tts is None else round(tts[1] - tts[0]["ttfb_ms"], 1),
        "tts_first_audio": None if latency is None else round(latency, 1),
    }


Spoken = tuple[str, np.ndarray, dict[str, Any]]


def spoken_set(settings: Settings, voices: str, half: str, turns: int) -> list[Spoken]:
    """What to say: the bundled samples (cycled `turns` times) or the unseen-voice set."""
    folder = Path(tempfile.mkdtemp(prefix="voicebot-bench-"))
    if voices == "samples":
        paths = synthesise_questions(folder, settings)
        return [
            (q.name, load_pcm16k(paths[q.name]), {"question": q.text})
            for q in (QUESTIONS[i % len(QUESTIONS)] for i in range(turns))
        ]
    chosen = None if half == "all" else half
    return [
        (
            u.name,
            load_pcm16k(path),
            {"question": u.text.replace(" |", ""), "voice": voice, "kind": u.kind, "half": u.half},
        )
        for u, voice, path in voice_set.synthesise(folder, chosen)  # type: ignore[arg-type]
    ]


async def measure_turns(
    settings: Settings, spoken: list[Spoken], url: str | None
) -> dict[str, Any]:
    """Speak each utterance through /ws (a local server unless `url`): turns, summary, server."""
    process = psutil.Process()
    results: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []

    async def measure(ws_url: str) -> tuple[float, float]:
        cpu_start, wall_start = process.cpu_times(), time.perf_counter()
        for name, pcm, meta in spoken:
            try:
                result = await run_turn(ws_url, pcm)
            except TimeoutError as e:  # no reply at all: a finding, not a crash
                failed.append({"name": name, **meta, "error": str(e)})
                print(json.dumps(failed[-1]), flush=True)
                continue
            record = turn_record(result, settings.turn.max_silence_secs)
            results.append({"name": name, **meta, **record})
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
            "cpu_s_per_turn": round(cpu_s / max(1, len(spoken)), 2),
            "note": "server and client share this process",
        }
    return {
        # What each stage actually ran: the chosen providers and their models or voices.
        "config": {
            stage: " + ".join(
                f"{s.id} {s.describe(settings)}" for s in providers.chosen(settings, stage)
            )
            for stage in STAGES
        },
        "turn_taking": {
            "end_on_complete_transcript": settings.turn.end_on_complete_transcript,
            "smart_turn": settings.turn.smart_turn,
            "max_silence_secs": settings.turn.max_silence_secs,
            "speculative": settings.turn.speculative,
        },
        "summary": {**summarise(results), "unanswered": len(failed)},
        "server_process": server_process,
        "turns": results,
        "unanswered": failed,
    }


async def turn_section(settings: Settings, turns: int) -> dict[str, Any]:
    """The suite's turn section: `turns` bundled sample questions through a local server."""
    spoken = await asyncio.to_thread(spoken_set, settings, "samples", "heldout", turns)
    return await measure_turns(settings, spoken, None)


async def run_turn_bench(
    settings: Settings,
    turns: int,
    output: Path,
    url: str | None,
    *,
    voices: str = "samples",
    half: str = "heldout",
) -> int:
    """Speak each utterance of the chosen set through /ws and write the results to `output`."""
    spoken = await asyncio.to_thread(spoken_set, settings, voices, half, turns)
    measured = await measure_turns(settings, spoken, url)
    report = {
        **report_header("turn"),
        "voices": voices,
        "half": half if voices == "unseen" else None,
        **measured,
    }
    await asyncio.to_thread(write_report, output, report)
    print(json.dumps(report["summary"], indent=2))
    return 0
