"""`voicebot bench sessions`: concurrent sessions through /ws, and the playback-gap measure."""

from __future__ import annotations

import json
from pathlib import Path

from voicebot.bench.sessions import run_sessions_bench
from voicebot.config import Settings
from voicebot.tools.client import playback_gaps
from voicebot.tools.local_server import LocalServer

RATE = 16000
CHUNK = (RATE // 10) * 2  # 100 ms of int16 audio


def test_audio_on_time_has_no_gaps() -> None:
    arrivals = [(i * 0.1, CHUNK) for i in range(20)]
    assert playback_gaps(arrivals, RATE) == (0.0, 0.0)


def test_a_late_chunk_is_a_gap_the_jitter_buffer_does_not_hide() -> None:
    # 10 chunks on time, then the sender stalls 0.5 s: the 100 ms buffer hides 0.1 s of it.
    arrivals = [(i * 0.1, CHUNK) for i in range(10)] + [(1.5, CHUNK), (1.6, CHUNK)]
    total, longest = playback_gaps(arrivals, RATE, jitter_s=0.1)
    assert round(total, 3) == round(longest, 3) == 0.4


def test_a_burst_ahead_of_time_is_no_gap() -> None:
    arrivals = [(0.0, CHUNK * 10), (0.9, CHUNK)]
    assert playback_gaps(arrivals, RATE) == (0.0, 0.0)


async def test_two_sessions_at_once(
    server: LocalServer, settings: Settings, tmp_path: Path
) -> None:
    output = tmp_path / "sessions.json"
    await run_sessions_bench(settings, [2], 1, output, url=server.ws_url)
    report = json.loads(output.read_text())
    level = report["levels"]["2"]
    assert level["summary"]["turns"] + level["summary"]["unanswered"] == 2
    answered = [t for t in level["turns"] if "error" not in t]
    assert answered, level
    for turn in answered:
        # Every reply says how long it queued for the shared LLM and how it played.
        assert "llm_queue_ms" in turn["stages"]
        assert turn["playback_gap_ms"] >= 0 and turn["reply_audio_s"] > 0
    assert {"session_median_latency_ms", "fairness_spread"} <= set(level["summary"])
