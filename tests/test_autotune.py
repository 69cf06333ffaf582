"""Auto-tuning decisions for recorded readings of real cards, and explicit values winning."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests import nvml_readings as cards
from tests.helpers import REPO, run_voicebot
from voicebot.autotune import autotune
from voicebot.config import Settings, load_settings
from voicebot.gpu import CudaStatus, GpuReport, read_nvml

PROFILES = sorted((REPO / "configs").glob("*.yaml"))


def report_for(fake_nvml: Any, *installed: cards.Card, usable: bool = True) -> GpuReport:
    fake_nvml(*installed)
    report = read_nvml()
    report.cuda = CudaStatus(
        usable, "probe passed" if usable else "probe: SIGABRT (cuDNN)", len(installed)
    )
    return report


def tuned(
    settings: Settings, report: GpuReport, **kwargs: Any
) -> tuple[dict[str, Any], dict[str, str]]:
    result = autotune(settings, report, llm_file_mib=93, **kwargs)
    values = result.settings.model_dump(mode="json")
    flat = {
        "stt.whisper.model": values["stt"]["whisper"]["model"],
        "stt.whisper.device": values["stt"]["whisper"]["device"],
        "stt.whisper.device_index": values["stt"]["whisper"]["device_index"],
        "stt.whisper.compute_type": values["stt"]["whisper"]["compute_type"],
        "stt.whisper.batch_size": values["stt"]["whisper"]["batch_size"],
        "tts.device": values["tts"]["device"],
        "llm.llama_cpp.gpu_layers": values["llm"]["llama_cpp"]["gpu_layers"],
    }
    return flat, result.decisions


@pytest.mark.parametrize(
    ("card", "model", "compute_type", "batch"),
    [
        (cards.T4, "small.en", "float16", 8),
        (cards.L4, "large-v3-turbo", "bfloat16", 8),
        (cards.A10G, "large-v3-turbo", "bfloat16", 8),
        (cards.RTX_4090, "large-v3-turbo", "bfloat16", 8),
        (cards.A100_40, "large-v3-turbo", "bfloat16", 16),
        (cards.A100_80, "large-v3-turbo", "bfloat16", 16),
        (cards.H100, "large-v3-turbo", "bfloat16", 16),
        (cards.H200, "large-v3-turbo", "bfloat16", 16),
    ],
    ids=lambda v: getattr(v, "name", None),
)
def test_decisions_for_real_cards(
    fake_nvml: Any, card: cards.Card, model: str, compute_type: str, batch: int
) -> None:
    values, reasons = tuned(Settings(), report_for(fake_nvml, card))
    assert values["stt.whisper.device"] == "cuda" and values["stt.whisper.device_index"] == 0
    assert values["stt.whisper.model"] == model
    assert values["stt.whisper.compute_type"] == compute_type
    assert values["stt.whisper.batch_size"] == batch
    assert (
        values["llm.llama_cpp.gpu_layers"] == -1
    )  # the 93 MiB GGUF fits beside STT/TTS everywhere
    assert values["tts.device"] == "cpu"  # Piper: only Kokoro uses the GPU
    assert card.name in reasons["stt.whisper.model"]


def test_no_gpu_gives_the_cpu_profile() -> None:
    values, reasons = tuned(Settings(), GpuReport())
    assert values == {
        "stt.whisper.model": "tiny.en",
        "stt.whisper.device": "cpu",
        "stt.whisper.device_index": 0,
        "stt.whisper.compute_type": "int8",
        "stt.whisper.batch_size": 1,
        "tts.device": "cpu",
        "llm.llama_cpp.gpu_layers": 0,
    }
    assert "no NVIDIA GPU" in reasons["stt.whisper.device"]
    # ... which is exactly the shipped CPU profile.
    cpu = load_settings(REPO / "configs" / "cpu_fallback.yaml")
    resolved = autotune(Settings(), GpuReport(), llm_file_mib=93).settings
    # server.max_sessions follows the cores of the machine; the profile pins the 2-core one.
    server = resolved.server.model_copy(update={"max_sessions": cpu.server.max_sessions})
    assert resolved.model_copy(update={"server": server}) == cpu


@pytest.mark.parametrize(("cores", "expected"), [(1, 2), (2, 2), (8, 8), (64, 64)])
def test_max_sessions_on_a_cpu_follows_the_cores(
    monkeypatch: pytest.MonkeyPatch, cores: int, expected: int
) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: cores)
    result = autotune(Settings(), GpuReport(), llm_file_mib=93)
    assert result.settings.server.max_sessions == expected
    assert f"{cores} cores" in result.decisions["server.max_sessions"]


def test_max_sessions_on_gpus_counts_the_usable_cards(fake_nvml: Any) -> None:
    two = report_for(fake_nvml, cards.L4, cards.L4)
    assert autotune(Settings(), two, llm_file_mib=93).settings.server.max_sessions == 8
    explicit = Settings(server={"max_sessions": 3})  # type: ignore[arg-type]
    assert autotune(explicit, two, llm_file_mib=93).settings.server.max_sessions == 3


def test_failed_cuda_probe_falls_back_to_cpu_with_the_reason(fake_nvml: Any) -> None:
    values, reasons = tuned(Settings(), report_for(fake_nvml, cards.H100, usable=False))
    assert values["stt.whisper.device"] == "cpu" and values["stt.whisper.compute_type"] == "int8"
    assert "SIGABRT" in reasons["stt.whisper.device"]


def test_two_gpus_pick_the_one_with_most_free_memory(fake_nvml: Any) -> None:
    busy = cards.Card("NVIDIA A10G", cards.A10G.total_bytes, 20 * 2**30, (8, 6))
    values, reasons = tuned(Settings(), report_for(fake_nvml, busy, cards.A10G))
    assert values["stt.whisper.device_index"] == 1
    assert "of 2" in reasons["stt.whisper.device_index"]


def test_kokoro_goes_to_the_gpu_and_a_big_gguf_stays_off_a_small_one(fake_nvml: Any) -> None:
    settings = Settings(tts={"provider": "kokoro"})
    report = report_for(fake_nvml, cards.T4)
    result = autotune(settings, report, llm_file_mib=14_000)
    assert result.settings.tts.device == "cuda"
    assert result.settings.llm.llama_cpp.gpu_layers == 0
    assert "does not fit" in result.decisions["llm.llama_cpp.gpu_layers"]


def test_missing_big_model_falls_back_to_what_is_on_disk(fake_nvml: Any) -> None:
    values, reasons = tuned(
        Settings(), report_for(fake_nvml, cards.H100), whisper_available=lambda n: n == "tiny.en"
    )
    assert values["stt.whisper.model"] == "tiny.en"
    assert "large-v3-turbo is not on disk" in reasons["stt.whisper.model"]
    assert "`voicebot models pull large-v3-turbo` fetches it" in reasons["stt.whisper.model"]


def test_explicit_values_always_win(
    fake_nvml: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    profile = tmp_path / "p.yaml"
    profile.write_text("stt:\n  whisper:\n    compute_type: float16\n    batch_size: 2\n")
    monkeypatch.setenv("VOICEBOT_STT__WHISPER__MODEL", "medium.en")
    settings = load_settings(profile, {"stt": {"whisper": {"device": "cuda"}}})
    values, reasons = tuned(settings, report_for(fake_nvml, cards.H100))
    assert values["stt.whisper.compute_type"] == "float16" and values["stt.whisper.batch_size"] == 2
    assert values["stt.whisper.model"] == "medium.en" and values["stt.whisper.device"] == "cuda"
    assert (
        not {
            "stt.whisper.compute_type",
            "stt.whisper.batch_size",
            "stt.whisper.model",
            "stt.whisper.device",
        }
        & reasons.keys()
    )


@pytest.mark.slow
@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name)
@pytest.mark.parametrize("gpu", [None, "T4", "H100"])
def test_every_profile_loads_and_tunes(profile: Path, gpu: str | None) -> None:
    args = ["config", "show", "--json", "--config", str(profile)]
    if gpu:
        args += ["--assume-gpu", gpu]
    done = run_voicebot(*args, timeout=60)
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["config"]["stt"]["whisper"]["device"] in ("cpu", "cuda")
    assert "auto" not in json.dumps(shown["config"]["stt"]), "an auto value was left unresolved"


@pytest.mark.slow
def test_config_show_names_each_source(tmp_path: Path) -> None:
    profile = tmp_path / "p.yaml"
    profile.write_text("llm:\n  max_tokens: 42\n")
    done = run_voicebot(
        "config",
        "show",
        "--json",
        "--config",
        str(profile),
        "--assume-gpu",
        "L4",
        env={"VOICEBOT_LLM__TEMPERATURE": "0.5", "GROQ_API_KEY": "gsk_secret_value"},
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    sources = shown["sources"]
    assert sources["llm.max_tokens"] == f"profile ({profile})"
    assert sources["llm.temperature"] == "env (VOICEBOT_LLM__TEMPERATURE)"
    assert sources["server.port"] == "default"
    assert sources["stt.whisper.compute_type"].startswith("auto: compute 8.9 supports bf16")
    assert shown["config"]["stt"]["whisper"]["compute_type"] == "bfloat16"
    assert shown["config"]["secrets"]["groq_api_key"] == "**********"
    assert "gsk_secret_value" not in done.stdout + done.stderr


@pytest.mark.slow
def test_config_show_text_lists_values_and_sources() -> None:
    done = run_voicebot("config", "show", "--assume-gpu", "none", timeout=60)
    assert done.returncode == 0, done.stderr
    assert "stt.whisper.model = 'tiny.en'    [auto: CPU" in done.stdout
    assert "llm.provider = 'llama_cpp'    [default]" in done.stdout


@pytest.mark.slow
def test_unknown_assumed_gpu_is_a_config_error() -> None:
    done = run_voicebot("config", "show", "--assume-gpu", "Voodoo 3", timeout=60)
    assert done.returncode == 2 and "unknown GPU 'Voodoo 3'" in done.stderr
