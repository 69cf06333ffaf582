"""`voicebot doctor`: this machine passes; a missing model, extra or key is named with its fix."""

from __future__ import annotations

import importlib.util
import json
import socket
from pathlib import Path

import pytest

from tests.helpers import run_voicebot, tweak
from voicebot.config import LlamaCppSettings, Secrets, Settings
from voicebot.tools.doctor import Check, Cpu, report, run_checks


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


@pytest.mark.slow
def test_doctor_json_on_this_machine() -> None:
    done = run_voicebot("doctor", "--json", timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    checks = {c["name"]: c for c in result["checks"]}
    assert result["ok"] is True
    assert {"cpu", "llama.cpp", "runtimes", "gpu", "stt", "llm", "tts", "port"} <= checks.keys()
    flags = Cpu.read().flags
    assert ("avx2" in flags) == ("avx2" in checks["cpu"]["detail"])
    assert "AMX_INT8 = 1" not in checks["llama.cpp"]["detail"]


def test_a_missing_model_fails_with_the_setting_to_change(settings: Settings) -> None:
    missing = tweak(
        settings, llm={"llama_cpp": LlamaCppSettings(model_path=Path("/nonexistent/m.gguf"))}
    )
    checks = run_checks(missing)
    llm = by_name(checks)["llm"]
    assert not llm.ok and llm.fix and "llm.llama_cpp.model_path" in llm.fix
    assert report(checks)["ok"] is False


def test_a_missing_extra_fails_with_the_pip_command(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "edge_tts" else real(name, *a)
    )
    tts = by_name(run_checks(tweak(settings, tts={"provider": "edge"})))["tts"]
    assert not tts.ok and tts.fix and "pip install 'voicebot[edge]'" in tts.fix


def test_a_missing_key_fails_naming_the_variable(settings: Settings) -> None:
    groq = tweak(settings.model_copy(update={"secrets": Secrets()}), llm={"provider": "groq"})
    llm = by_name(run_checks(groq))["llm"]
    assert not llm.ok and llm.fix and "GROQ_API_KEY" in llm.fix


def test_a_busy_port_fails_with_how_to_move(settings: Settings) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = tweak(settings, server={"port": port})
        check = by_name(run_checks(busy))["port"]
    assert not check.ok and check.fix and "server.port" in check.fix


def test_a_build_for_instructions_this_cpu_lacks_is_a_failure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from voicebot.providers.llm import llama_cpp
    from voicebot.tools.doctor import check_llama_cpp

    native = "CPU : AVX = 1 | AVX2 = 1 | AVX512 = 1 | AMX_INT8 = 1 |"
    monkeypatch.setattr(
        llama_cpp.LlamaBuild, "installed", classmethod(lambda cls: cls.parse(native))
    )
    check = check_llama_cpp(Cpu("AMD EPYC", frozenset({"avx", "avx2", "fma"})), needed=True)
    assert not check.ok and "SIGILL" in check.detail and check.fix
    amx_cpu = Cpu("Xeon", frozenset({"avx", "avx2", "avx512f", "amx_int8"}))
    assert check_llama_cpp(amx_cpu, needed=True).ok  # runs, without repacking
