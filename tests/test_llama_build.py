"""The installed llama.cpp runs on any x86-64 CPU, and a build with AMX cannot crash us."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from tests.helpers import tweak
from voicebot.config import LlamaCppSettings, Settings
from voicebot.models import SharedModels
from voicebot.providers.llm.llama_cpp import LlamaBuild, use_extra_buffers
from voicebot.tools.chat import chat
from voicebot.tools.doctor import Cpu

NATIVE_SAPPHIRE_RAPIDS = (
    "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX_VNNI = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | "
    "BMI2 = 1 | AVX512 = 1 | AVX512_VBMI = 1 | AVX512_VNNI = 1 | AVX512_BF16 = 1 | "
    "AMX_INT8 = 1 | LLAMAFILE = 1 | OPENMP = 1 | REPACK = 1 |"
)


def test_installed_llama_cpp_is_the_portable_build() -> None:
    build = LlamaBuild.installed()
    assert build.features.get("AVX2"), build.system_info
    for feature in ("AMX_INT8", "AVX512", "AVX512_VNNI", "AVX_VNNI"):
        assert not build.features.get(feature), f"{feature} compiled in: {build.system_info}"
    assert not build.amx


def test_installed_wheel_came_from_the_portable_build_cache() -> None:
    """quick_start.sh installs the wheel deployment/build_llama_cpp.sh built, not pip's own."""
    dist = importlib.metadata.distribution("llama-cpp-python")
    direct = json.loads(dist.read_text("direct_url.json") or "{}")
    wheel = Path(unquote(urlparse(direct.get("url", "")).path))
    assert wheel.suffix == ".whl", f"llama-cpp-python was not installed from a wheel: {direct}"
    flags = (wheel.parent / "FLAGS").read_text()
    assert "-DGGML_NATIVE=OFF" in flags and "-DGGML_AMX_INT8=OFF" in flags


def test_a_native_build_on_an_amx_cpu_is_recognised() -> None:
    build = LlamaBuild.parse(NATIVE_SAPPHIRE_RAPIDS)
    assert build.amx
    assert not use_extra_buffers("if_safe", build)  # no AMX repacking: the crash path is avoided
    assert use_extra_buffers("on", build)  # unless the operator insists
    zen3 = {"avx", "avx2", "f16c", "fma"}
    assert build.missing_on(zen3) == ["AVX512", "AVX512_VNNI", "AVX_VNNI", "AMX_INT8"]
    assert LlamaBuild.installed().missing_on(set(Cpu.read().flags)) == []


@pytest.mark.slow
async def test_the_model_answers_when_loaded_without_extra_buffers(settings: Settings) -> None:
    """The AMX defence path: no repacked weights, and the model still answers."""
    plain = tweak(settings, llm={"llama_cpp": LlamaCppSettings(extra_buffers="off")})
    models = SharedModels.load(plain, stages=("llm",))
    result = await chat(plain, models, "What is the capital of France?")
    assert result.provider == "llama_cpp" and result.reply and result.tokens > 1
