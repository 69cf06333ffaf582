"""`voicebot bench suite --quick` works end to end, its report validates, compare reads it.

Figures are never asserted: only that each section measured something, the report
matches its schema and the plots are real images.
"""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.helpers import REPO, run_voicebot
from voicebot.bench.compare import compare
from voicebot.bench.report import MemorySampler, report_header, validate
from voicebot.bench.speech import leading_silence_ms, word_error_rate
from voicebot.bench.stt import model_section
from voicebot.bench.suite import SECTIONS
from voicebot.bench.turn import timeline
from voicebot.config import Settings
from voicebot.tools.client import TurnResult

PLOTS = ("stt.png", "batch.png", "tts.png", "llm.png", "turn.png", "timeline.png")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real `voicebot bench suite --quick` in a subprocess, shared by the tests below."""
    output = tmp_path_factory.mktemp("suite")
    done = run_voicebot("bench", "suite", "--quick", "--output", str(output), timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    return output


def _measured(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [row for row in rows if "skipped" not in row]


@pytest.mark.slow
def test_quick_suite_writes_a_valid_report_with_every_section(quick_run: Path) -> None:
    report = json.loads((quick_run / "suite.json").read_text())
    assert validate(report) is None
    assert report["schema_version"] == 1 and report["quick"] is True
    assert set(report["sections"]) == set(SECTIONS)
    sections = report["sections"]
    for name in ("stt", "tts", "llm"):
        assert _measured(sections[name]["rows"]), f"{name} measured nothing: {sections[name]}"
    assert [row["batch_size"] for row in sections["batch"]["rows"]] == [1, 2]
    assert sections["turn"]["turns"], sections["turn"]
    # Speech of known text comes back as that text from the bundled Whisper.
    assert any(r["wer"] < 0.5 for r in _measured(sections["stt"]["rows"])[0]["lengths"])
    providers = {row["provider"] for row in _measured(sections["tts"]["rows"])}
    assert providers == {"piper", "edge"}
    assert report["machine"]["cpu"] and report["machine"]["packages"]["pipecat-ai"]
    timeline_ms = sections["turn"]["turns"][0]["timeline_ms"]
    assert timeline_ms["tts_first_audio"] is not None and timeline_ms["stt"] is not None


@pytest.mark.slow
def test_quick_suite_draws_real_plots(quick_run: Path) -> None:
    for name in PLOTS:
        with Image.open(quick_run / name) as image:
            assert image.format == "PNG"
            assert image.width >= 500 and image.height >= 150, (name, image.size)
            low, high = image.convert("L").getextrema()
            assert high - low > 100, f"{name} is blank"


@pytest.mark.slow
def test_compare_names_what_got_slower_and_faster(quick_run: Path, tmp_path: Path) -> None:
    old = json.loads((quick_run / "suite.json").read_text())
    new = copy.deepcopy(old)
    stt_row = _measured(new["sections"]["stt"]["rows"])[0]
    stt_row["lengths"][0]["latency_ms"] *= 2
    new["sections"]["batch"]["rows"][0]["audio_s_per_s"] *= 3
    (tmp_path / "old.json").write_text(json.dumps(old))
    (tmp_path / "new.json").write_text(json.dumps(new))
    done = run_voicebot("bench", "compare", str(tmp_path / "old.json"), str(tmp_path / "new.json"))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    slower = [line for line in lines if line.strip().startswith("slower")]
    better = [line for line in lines if line.strip().startswith("better")]
    assert len(slower) == 1 and "latency_ms" in slower[0] and "(+100%)" in slower[0]
    assert f"[{stt_row['model']} {stt_row['compute_type']}" in slower[0]
    assert len(better) == 1 and "audio_s_per_s" in better[0]


def test_gpu_benchmark_script_is_the_suite_command() -> None:
    done = subprocess.run(
        [sys.executable, "tests/benchmark/gpu_benchmark.py", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    for option in ("--quick", "--models-dir", "--compute-types", "--batch-sizes", "--edge"):
        assert option in done.stdout


def _small_report() -> dict[str, Any]:
    memory = {"rss_before_mib": 100.0, "rss_peak_mib": 150.0}
    memory |= {"vram_before_mib": None, "vram_peak_mib": None}
    reply = {"question": "q", "provider": "llama_cpp", "ttft_ms": 80.0, "pieces": 9}
    reply |= {"pieces_per_s": 40.0, "reply": "a"}
    return {
        "schema_version": 1,
        **report_header("llm"),
        "quick": True,
        "plan": {},
        "duration_s": 1.0,
        "settings": Settings().redacted(),
        "autotune": {},
        "sections": {
            "llm": {
                "note": "n",
                "rows": [
                    {
                        "backend": "llama_cpp",
                        "model": "m",
                        "load_s": 1.0,
                        "ttft_ms": 80.0,
                        "pieces_per_s": 40.0,
                        "replies": [reply],
                        "memory": memory,
                    },
                    {"backend": "groq", "skipped": "GROQ_API_KEY is not set"},
                ],
            },
            "turn": {"skipped": "could not run: no model"},
        },
    }


def test_schema_accepts_a_report_and_rejects_malformed_ones() -> None:
    report = _small_report()
    assert validate(report) is None

    missing = copy.deepcopy(report)
    del missing["schema_version"]
    assert "schema_version" in (validate(missing) or "")

    wrong_type = copy.deepcopy(report)
    wrong_type["sections"]["llm"]["rows"][0]["ttft_ms"] = "fast"
    assert validate(wrong_type) is not None

    # A row is either measured or skipped with a reason, never both or neither.
    both = copy.deepcopy(report)
    both["sections"]["llm"]["rows"][0]["skipped"] = "no"
    assert validate(both) is not None
    bare = copy.deepcopy(report)
    bare["sections"]["llm"]["rows"][1] = {"backend": "groq"}
    assert validate(bare) is not None

    empty = copy.deepcopy(report)
    empty["sections"]["llm"]["rows"] = []
    assert validate(empty) is not None
    unknown = copy.deepcopy(report)
    unknown["sections"]["speed"] = {"rows": []}
    assert validate(unknown) is not None


def test_compare_matches_rows_by_identity_and_knows_which_way_is_better() -> None:
    old = _small_report()
    old["sections"]["llm"]["rows"].reverse()  # order must not matter
    new = _small_report()
    row = new["sections"]["llm"]["rows"][0]
    row["ttft_ms"] = 40.0  # faster
    row["pieces_per_s"] = 30.0  # slower decoding: worse
    row["load_s"] = 1.05  # within the threshold
    lines = compare(old, new, threshold=0.1)
    assert any(line.strip().startswith("faster") and "ttft_ms" in line for line in lines)
    assert any(line.strip().startswith("worse") and "pieces_per_s" in line for line in lines)
    assert not any("load_s" in line for line in lines[:-1])
    assert lines[0].strip().startswith("worse")  # what got worse comes first
    new["machine"]["cpu"] = "another CPU"
    assert compare(old, new)[0].startswith("note: the two reports come from different machines")


def test_word_error_rate_ignores_case_and_punctuation() -> None:
    assert word_error_rate("What is the capital of France?", "what is the capital of france") == 0
    assert math.isclose(word_error_rate("one two three four five", "one two tree four five"), 0.2)
    assert word_error_rate("Why is the sky blue?", "") == 1.0


def test_leading_silence_is_the_quiet_time_before_the_first_sound() -> None:
    rate = 16000
    pcm = np.zeros(rate, np.int16)
    pcm[4000:] = 8000
    assert leading_silence_ms(pcm.tobytes(), rate) == 250.0
    assert leading_silence_ms(np.zeros(160, np.int16).tobytes(), rate) == 10.0


def test_memory_sampler_sees_a_peak_above_the_start() -> None:
    # The block stays alive until the background thread has read it (or a generous
    # deadline passes): filling it holds the GIL, so on a busy machine the sampler may
    # get no reading at all while the block is being written and freed.
    with MemorySampler(interval_s=0.01) as memory:
        block = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
        deadline = time.monotonic() + 30.0
        while memory.rss_peak_mib < memory.rss_before_mib + 32 and time.monotonic() < deadline:
            time.sleep(0.01)
        del block
    summary = memory.summary()
    assert summary["rss_peak_mib"] is not None and summary["rss_before_mib"] is not None
    assert summary["rss_peak_mib"] >= summary["rss_before_mib"] + 32


async def test_rows_that_cannot_run_here_say_why() -> None:
    settings = Settings(stt={"whisper": {"device": "cpu", "models_dir": None}})
    section = await model_section(
        settings,
        None,  # type: ignore[arg-type]  # no row gets far enough to speak
        models=("large-v3",),
        compute_types=("int8",),
        lengths=(1,),
        repeats=1,
    )
    assert "not bundled" in section["rows"][0]["skipped"]
    section = await model_section(
        settings,
        None,  # type: ignore[arg-type]
        models=("tiny.en",),
        compute_types=("float16", "bfloat16"),
        lengths=(1,),
        repeats=1,
    )
    assert all("GPU precision" in row["skipped"] for row in section["rows"])


def test_timeline_places_each_step_after_the_last_voiced_sample() -> None:
    result = TurnResult(
        transcript="x",
        reply="y",
        reply_audio=b"\0\0" * 100,
        sample_rate=22050,
        turn_latency_ms=900.0,
        stages={"llm_ttft_ms": 100.0, "tts_ttfb_ms": 150.0},
        events=[
            {"type": "user_stopped_speaking"},  # an earlier pause in the same utterance
            {"type": "user_stopped_speaking"},
            {"type": "transcript", "text": "x", "final": False},
            {"type": "transcript", "text": "x", "final": True},
            {"type": "metrics", "stage": "stt", "processing_ms": 200.0},
            {"type": "metrics", "stage": "llm", "ttfb_ms": 100.0},
            {"type": "metrics", "stage": "tts", "ttfb_ms": 150.0},
        ],
        event_ms=[-700.0, 250.0, 300.0, 450.0, 451.0, 600.0, 880.0],
    )
    assert timeline(result) == {
        "vad_stop": 250.0,
        "stt": 450.0,
        "llm_first_token": 600.0,
        "first_clause": 730.0,
        "tts_first_audio": 900.0,
    }


def test_a_variant_changes_the_settings_asked_for_and_keeps_the_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from voicebot.bench.report import variant
    from voicebot.config import load_settings

    monkeypatch.setenv("VOICEBOT_API_KEYS", "sk-FAKE-KEY")
    settings = load_settings()
    changed = variant(settings, {"stt": {"whisper": {"model": "base"}}})
    assert changed.stt.whisper.model == "base"
    assert changed.secrets.api_key_list() == ["sk-FAKE-KEY"]
