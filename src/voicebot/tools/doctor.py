"""`voicebot doctor`: what this machine is, what the configuration needs, and what to fix.

Each check says what it found and, when something the configuration needs is wrong, the
fix in one line. Checks never load a model; the CUDA probe runs in a subprocess.
"""

from __future__ import annotations

import importlib.util
import platform
import socket
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from voicebot.config import Settings
from voicebot.errors import ConfigError
from voicebot.providers import spec as providers
from voicebot.providers.spec import STAGES, Stage

# CPU flags worth showing: what llama.cpp, CTranslate2 and ONNX Runtime can use.
INTERESTING_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "avx_vnni",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
)


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    # One line saying what to change; set when `ok` is false.
    fix: str | None = None
    # False for facts that do not matter to the current configuration (exit code ignores them).
    needed: bool = True


@dataclass(frozen=True)
class Cpu:
    model: str
    flags: frozenset[str]

    @classmethod
    def read(cls, cpuinfo: Path = Path("/proc/cpuinfo")) -> Cpu:
        model, flags = platform.processor() or platform.machine(), frozenset[str]()
        if cpuinfo.is_file():
            for line in cpuinfo.read_text(errors="replace").splitlines():
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model in ("", platform.machine()):
                    model = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = frozenset(value.split())
        return cls(model, flags)


def check_cpu(cpu: Cpu) -> Check:
    shown = [flag for flag in INTERESTING_FLAGS if flag in cpu.flags]
    detail = f"{cpu.model}, {platform.machine()}: {' '.join(shown) or 'no SIMD flags read'}"
    if platform.machine() in ("x86_64", "AMD64") and "avx2" not in cpu.flags:
        return Check(
            "cpu",
            False,
            detail,
            "this CPU lacks AVX2: build llama-cpp-python with -DGGML_AVX2=OFF -DGGML_FMA=OFF "
            "(edit deployment/build_llama_cpp.sh) and expect slow STT",
        )
    return Check("cpu", True, detail)


def check_llama_cpp(cpu: Cpu, needed: bool) -> Check:
    if importlib.util.find_spec("llama_cpp") is None:
        return Check(
            "llama.cpp",
            not needed,
            "llama-cpp-python is not installed",
            "pip install 'voicebot[llama-cpp]' from the portable wheel (./quick_start.sh)",
            needed,
        )
    from voicebot.providers.llm.llama_cpp import REBUILD_HINT, LlamaBuild

    build = LlamaBuild.installed()
    missing = build.missing_on(set(cpu.flags))
    if missing:
        return Check(
            "llama.cpp",
            False,
            f"built for instructions this CPU lacks ({', '.join(missing)}): it would crash "
            f"with SIGILL. {build.system_info}",
            REBUILD_HINT,
            needed,
        )
    if build.amx:
        return Check(
            "llama.cpp",
            True,
            "built with AMX: voicebot loads models without weight repacking so it cannot "
            f"crash, at some speed cost ({REBUILD_HINT}). {build.system_info}",
            needed=needed,
        )
    return Check("llama.cpp", True, f"portable build, safe here. {build.system_info}", None, needed)


def check_runtimes() -> Check:
    parts = []
    if importlib.util.find_spec("onnxruntime") is not None:
        import onnxruntime

        parts.append(
            f"onnxruntime {onnxruntime.__version__}: {onnxruntime.get_available_providers()}"
        )
    if importlib.util.find_spec("ctranslate2") is not None:
        import ctranslate2

        cuda = ctranslate2.get_cuda_device_count()
        types = sorted(ctranslate2.get_supported_compute_types("cpu"))
        parts.append(f"ctranslate2 {ctranslate2.__version__}: {cuda} CUDA device(s), cpu {types}")
    if not parts:
        return Check(
            "runtimes",
            False,
            "neither onnxruntime nor ctranslate2 is installed",
            "pip install 'voicebot[cpu]'",
        )
    return Check("runtimes", True, "; ".join(parts))


def check_gpu() -> Check:
    from voicebot.gpu import detect

    report = detect()
    if not report.gpus:
        return Check("gpu", True, f"no NVIDIA GPU: {report.cuda.reason}; running on the CPU")
    names = ", ".join(f"{g.name} ({g.free_mib}/{g.total_mib} MiB free)" for g in report.gpus)
    if report.cuda.usable:
        return Check("gpu", True, f"{names}; CUDA usable: {report.cuda.reason}")
    return Check(
        "gpu",
        False,
        f"{names}; CUDA NOT usable: {report.cuda.reason}",
        "install the CUDA 12 runtime with cuDNN 9 and cuBLAS (or use the GPU image); "
        "until then everything runs on the CPU",
        needed=False,
    )


def check_port(settings: Settings) -> Check:
    host, port = settings.server.host, settings.server.port
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        try:
            sock.bind((host, port))
        except OSError as e:
            return Check(
                "port",
                False,
                f"{host}:{port} cannot be bound: {e.strerror}",
                "stop what listens there, or set server.port (--port / VOICEBOT_SERVER__PORT)",
            )
    return Check("port", True, f"{host}:{port} is free")


def check_stage(settings: Settings, stage: Stage) -> Check:
    """The stage's chosen providers: installed, their models and keys present."""
    try:
        providers.check(settings, (stage,))
    except ConfigError as e:
        return Check(stage, False, str(e).splitlines()[0], str(e))
    chosen = providers.chosen(settings, stage)
    return Check(stage, True, " + ".join(f"{s.id} {s.describe(settings)}" for s in chosen))


def run_checks(settings: Settings) -> list[Check]:
    cpu = Cpu.read()
    uses_llama = "llama_cpp" in (settings.llm.provider, settings.llm.fallback)
    return [
        check_cpu(cpu),
        check_llama_cpp(cpu, needed=uses_llama),
        check_runtimes(),
        check_gpu(),
        *(check_stage(settings, stage) for stage in STAGES),
        check_port(settings),
    ]


def report(checks: list[Check]) -> dict[str, Any]:
    return {
        "ok": all(c.ok or not c.needed for c in checks),
        "checks": [asdict(c) for c in checks],
    }


def print_report(checks: list[Check]) -> None:
    for check in checks:
        mark = "ok  " if check.ok else ("FAIL" if check.needed else "warn")
        print(f"[{mark}] {check.name}: {check.detail}")
        if not check.ok and check.fix:
            print(f"       fix: {check.fix}")
