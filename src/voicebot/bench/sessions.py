"""`voicebot bench sessions`: several people talking to one server at once.

For each concurrency level, that many clients speak the sample questions over /ws at
real-time pace, at the same time (their starts staggered so turns overlap at different
moments). Per turn: latency, the stages, how long the reply waited for the shared LLM,
and the playback gaps a listener would hear (reply audio arriving later than a player
with a 100 ms buffer needs it). One person's turn must not stall another's audio, and
sessions should share the LLM fairly: the report compares sessions' medians.
"""

from __future__ import annotations

import asyncio
import json
import statistics
from pathlib import Path
from typing import Any

from websockets.exceptions import ConnectionClosed

from voicebot.bench.report import percentile, report_header, write_report
from voicebot.bench.turn import spoken_set
from voicebot.config import Settings
from voicebot.tools.client import playback_gaps, run_turn
from voicebot.tools.local_server import LocalServer, without_session_limits

JITTER_BUFFER_S = 0.1


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


async def _person(
    url: str, index: int, spoken: list[Any], turns: int, delay_s: float
) -> list[dict[str, Any]]:
    await asyncio.sleep(delay_s)
    records = []
    for k in range(turns):
        name, pcm, _meta = spoken[(index + k) % len(spoken)]
        try:
            result = await run_turn(url, pcm, settle_s=0.5)
        except (TimeoutError, ConnectionClosed) as e:  # no reply, or refused: a finding
            records.append({"session": index, "name": name, "error": str(e)})
            continue
        total, longest = playback_gaps(result.audio_arrivals, result.sample_rate, JITTER_BUFFER_S)
        records.append(
            {
                "session": index,
                "name": name,
                "turn_latency_ms": result.turn_latency_ms,
                "stages": result.stages,
                "reply_audio_s": round(result.reply_audio_s, 2),
                "playback_gap_ms": round(total * 1000, 1),
                "longest_gap_ms": round(longest * 1000, 1),
            }
        )
    return records


def _level_summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    done = [r for r in records if "error" not in r and r["turn_latency_ms"] is not None]
    latencies = [r["turn_latency_ms"] for r in done]
    per_session = {
        s: _median([r["turn_latency_ms"] for r in done if r["session"] == s])
        for s in sorted({r["session"] for r in done})
    }
    medians = [m for m in per_session.values() if m]
    return {
        "turns": len(done),
        "unanswered": len(records) - len(done),
        "turn_latency_ms": {"median": _median(latencies), "p90": percentile(latencies, 0.9)},
        "llm_queue_ms": {
            "median": _median([r["stages"].get("llm_queue_ms", 0.0) for r in done]),
            "max": max((r["stages"].get("llm_queue_ms", 0.0) for r in done), default=None),
        },
        "playback_gap_ms_per_reply": {
            "median": _median([r["playback_gap_ms"] for r in done]),
            "max": max((r["playback_gap_ms"] for r in done), default=None),
        },
        "replies_with_gaps": sum(r["playback_gap_ms"] > 0 for r in done),
        "session_median_latency_ms": per_session,
        # 1.0 = every session waited the same; 2.0 = the slowest session's median was double.
        "fairness_spread": round(max(medians) / min(medians), 2) if len(medians) > 1 else 1.0,
    }


async def run_sessions_bench(
    settings: Settings, levels: list[int], turns: int, output: Path, url: str | None = None
) -> dict[str, Any]:
    spoken = await asyncio.to_thread(spoken_set, settings, "samples", "all", 5)
    report: dict[str, Any] = {
        **report_header("sessions"),
        "turns_per_session": turns,
        "jitter_buffer_ms": JITTER_BUFFER_S * 1000,
        "levels": {},
    }

    async def measure(ws_url: str) -> None:
        for level in levels:
            people = [
                _person(ws_url, i, spoken, turns, delay_s=i * 1.3 / max(1, level))
                for i in range(level)
            ]
            records = [r for rs in await asyncio.gather(*people) for r in rs]
            report["levels"][str(level)] = {"summary": _level_summary(records), "turns": records}
            print(json.dumps({level: report["levels"][str(level)]["summary"]}), flush=True)

    if url:
        await measure(url)
    else:
        # Measuring beyond the server's session limit is the point: lift it here.
        async with LocalServer(without_session_limits(settings)) as server:
            await measure(server.ws_url)
    await asyncio.to_thread(write_report, output, report)
    return report
