"""Fuzz and soak in CI sizes, through the same harness as `voicebot bench reliability`.

CI runs fuzz at FUZZ_MESSAGES over FUZZ_SESSIONS and soak at SOAK_SESSIONS; the full
sizes (fuzz 10,000 over 50, soak 500) run from the bench command (README_PIPECAT.md,
Reliability). Each asserts what a user or operator would notice: the canary caller is
answered throughout and after, the server logs no ERROR line and no traceback, every
hostile message is answered (an error event, a pong, or a close with a code and a
reason), and after the soak threads and open files are back near the baseline.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from voicebot.bench.reliability import hostile_message, passed, run_reliability
from voicebot.config import Settings
from voicebot.models import SharedModels

FUZZ_MESSAGES = 10_000
FUZZ_SESSIONS = 50
SOAK_SESSIONS = 100


def test_hostile_messages_cover_every_kind_and_are_repeatable() -> None:
    kinds = {hostile_message(random.Random(seed), 65536)[0] for seed in range(2000)}
    assert kinds == {
        "oversized",
        "non_utf8_text",
        "odd_bytes",
        "empty_bytes",
        "random_text",
        "random_json",
        "deep_json",
        "huge_int",
        "wrong_types",
        "ping",
    }
    assert hostile_message(random.Random(7), 1024) == hostile_message(random.Random(7), 1024)


@pytest.mark.slow
async def test_fuzz_every_hostile_message_is_answered_and_nothing_breaks(
    settings: Settings, models: SharedModels, tmp_path: Path
) -> None:
    report = await run_reliability(
        "fuzz",
        settings,
        models=models,
        messages=FUZZ_MESSAGES,
        sessions=FUZZ_SESSIONS,
        output=tmp_path / "fuzz.json",
    )
    fuzz = report["fuzz"]
    assert fuzz["messages"] == FUZZ_MESSAGES
    assert passed(report) == [], report
    assert fuzz["unanswered"] == 0 and report["log"] == {
        "errors": 0,
        "tracebacks": 0,
        "examples": [],
    }
    # Each way to break the protocol was tried and drew its own answer.
    assert {"invalid_audio", "empty_audio", "invalid_json", "unknown_message_type"} <= set(
        fuzz["error_codes"]
    )
    closes = " ".join(fuzz["close_codes"])
    assert "1007" in closes and "1009" in closes
    assert report["canary"]["answered"] >= 2 and report["canary"]["answered_after"]


@pytest.mark.slow
async def test_soak_sessions_aborted_mid_turn_leave_nothing_behind(
    settings: Settings, models: SharedModels, tmp_path: Path
) -> None:
    report = await run_reliability(
        "soak", settings, models=models, sessions=SOAK_SESSIONS, output=tmp_path / "soak.json"
    )
    outcomes = report["soak"]["outcomes"]
    aborted = outcomes.get("aborted_mid_turn", 0) + outcomes.get("aborted_no_turn", 0)
    assert outcomes.get("closed") == SOAK_SESSIONS // 2 and aborted == SOAK_SESSIONS // 2
    assert outcomes.get("aborted_mid_turn", 0) >= 1, outcomes  # a turn was under way
    assert passed(report) == [], report
    assert report["canary"]["answered_after"]


@pytest.mark.slow
async def test_a_long_session_answers_every_turn_and_reports_its_memory_slope(
    settings: Settings, models: SharedModels, tmp_path: Path
) -> None:
    report = await run_reliability(
        "long", settings, models=models, minutes=0.5, output=tmp_path / "long.json"
    )
    long = report["long"]
    assert passed(report) == [], report
    assert long["turns"] >= 2 and long["failed_turns"] == 0
    assert len(long["rss_samples"]) == long["turns"] + long["failed_turns"]
    assert long["rss_mib_first"] > 50 and long["rss_mib_last"] > 50
    # Slopes are figures, not asserted: only that they were fitted from the samples.
    if long["turns"] >= 3:
        assert isinstance(long["rss_mib_per_minute"], float)
