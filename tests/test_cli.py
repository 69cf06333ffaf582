"""The `voicebot` command as a user runs it: talk, and start-up errors that say what to fix."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

from tests.helpers import run_voicebot


@pytest.mark.slow
def test_talk_json_reports_one_sane_turn(question_wavs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "reply.wav"
    done = run_voicebot("talk", str(question_wavs["week"]), "--json", "--output", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)  # stdout holds the one JSON object and nothing else

    assert {"transcript", "reply", "reply_audio_s", "turn_latency_ms", "stages"} <= report.keys()
    assert {"days", "week"} <= set(re.findall(r"[a-z]+", report["transcript"].lower()))
    assert report["reply"]
    # Sanity bounds only (a busy CI machine is slow): latency is measured by benchmarks.
    assert 0 < report["turn_latency_ms"] < 60_000
    for stage in ("stt_ms", "llm_ttft_ms", "tts_ttfb_ms"):
        assert 0 < report["stages"][stage] < 30_000, report["stages"]
    assert report["stages"]["llm_tokens_per_s"] > 0
    # The stage times are parts of the turn, so none can exceed it.
    assert report["stages"]["stt_ms"] < report["turn_latency_ms"]

    audio, rate = sf.read(out, dtype="int16")
    assert rate == 22050
    assert abs(len(audio) / rate - report["reply_audio_s"]) < 0.05
    assert abs(audio).max() > 1000, "reply audio is silent"


@pytest.mark.slow
def test_talk_on_a_file_that_is_not_audio(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.wav"
    bogus.write_text("this is not a wave file")
    done = run_voicebot("talk", str(bogus))
    assert done.returncode == 2
    assert "not a readable audio file" in done.stderr


@pytest.mark.slow
def test_serve_with_missing_model_names_the_setting() -> None:
    done = run_voicebot(
        "serve", env={"VOICEBOT_LLM__LLAMA_CPP__MODEL_PATH": "/nonexistent/model.gguf"}, timeout=60
    )
    assert done.returncode == 2
    assert "llm.llama_cpp.model_path=/nonexistent/model.gguf does not exist" in done.stderr


@pytest.mark.slow
def test_a_key_that_moved_names_its_new_place(tmp_path: Path) -> None:
    old = tmp_path / "old.yaml"
    old.write_text("llm:\n  n_ctx: 4096\ntts:\n  voice: en_US-joe-medium\n")
    done = run_voicebot("serve", "--config", str(old), env={"VOICEBOT_LLM__COOLDOWN_S": "5"})
    assert done.returncode == 2
    assert f"llm.n_ctx in {old} has moved: use llm.llama_cpp.n_ctx" in done.stderr
    assert "tts.voice in" in done.stderr and "use tts.piper.voice" in done.stderr
    assert "VOICEBOT_LLM__COOLDOWN_S has moved: use VOICEBOT_LLM__COOLDOWN_SECS" in done.stderr


@pytest.mark.slow
def test_serve_with_unbundled_whisper_model_names_the_setting() -> None:
    done = run_voicebot("serve", env={"VOICEBOT_STT__WHISPER__MODEL": "large-v3"}, timeout=60)
    assert done.returncode == 2
    assert "stt.whisper.model='large-v3' is not bundled" in done.stderr
    assert "stt.whisper.model_path" in done.stderr


@pytest.mark.slow
def test_serve_with_yaml_typo_names_key_and_file(tmp_path: Path) -> None:
    profile = tmp_path / "typo.yaml"
    profile.write_text("tts:\n  voise: en_US-joe-medium\n")
    done = run_voicebot("serve", "--config", str(profile), timeout=60)
    assert done.returncode == 2
    assert "tts.voise: unknown key" in done.stderr and str(profile) in done.stderr


def test_the_cli_runs_without_the_bench_extra() -> None:
    # The server image has no matplotlib/jiwer/jsonschema: the parser must not need them,
    # and `bench suite` says which extra to install.
    blocked = "import sys; sys.modules.update(matplotlib=None, jiwer=None, jsonschema=None); "
    parse = blocked + "from voicebot.cli import _parser; _parser().parse_args(['serve'])"
    assert subprocess.run([sys.executable, "-c", parse], check=False).returncode == 0
    suite = blocked + "from voicebot.cli import main; raise SystemExit(main(['bench', 'suite']))"
    done = subprocess.run([sys.executable, "-c", suite], capture_output=True, text=True)
    assert done.returncode == 2
    assert "voicebot[bench]" in done.stderr
