"""What every benchmark report holds (schema version, machine, settings); writing and checking it.

The report format is `schema_v1.json` (JSON Schema, shipped with the package); bump
SCHEMA_VERSION and add a new schema file when a field changes meaning or disappears.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import threading
import time
from importlib import metadata, resources
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil

from voicebot.config import Settings

SCHEMA_VERSION = 1
# The packages whose versions decide the figures; absent ones are recorded as null.
PACKAGES = (
    "voicebot",
    "pipecat-ai",
    "faster-whisper",
    "ctranslate2",
    "onnxruntime",
    "onnxruntime-gpu",
    "llama-cpp-python",
    "torch",
    "transformers",
    "piper-tts",
    "kokoro-onnx",
    "edge-tts",
    "numpy",
    "jiwer",
    "matplotlib",
)
# CPU flags that change inference speed (SIMD width, int8/bf16 dot products, AMX tiles).
CPU_FLAG_PREFIXES = ("sse4", "avx", "fma", "f16c", "amx", "vnni")


def report_header(benchmark: str) -> dict[str, Any]:
    """The fields every benchmark report starts with: what, when, and on what machine."""
    return {
        "benchmark": benchmark,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
    }


def _cpuinfo() -> tuple[str, list[str]]:
    model, flags = platform.processor() or platform.machine(), []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value:
                model = value.strip()
            elif key.strip() == "flags":
                flags = value.split()
                break
    except OSError:
        pass
    return model, sorted(f for f in flags if f.startswith(CPU_FLAG_PREFIXES))


def machine() -> dict[str, Any]:
    """What the figures were measured on: CPU, memory, GPU, driver, CUDA, package versions."""
    from voicebot.gpu import read_nvml

    cpu_model, flags = _cpuinfo()
    nvml = read_nvml()
    packages: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu_model,
        "cpu_flags": flags,
        "cpu_count": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "gpu": {
            "gpus": [{"name": g.name, "total_mib": g.total_mib} for g in nvml.gpus],
            "driver_version": nvml.driver_version,
            "cuda_version": nvml.cuda_version,
        }
        if nvml.gpus
        else None,
        "packages": packages,
    }


def write_report(path: Path, data: dict[str, Any]) -> None:
    """Write a benchmark's JSON report, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))


def schema() -> dict[str, Any]:
    text = resources.files("voicebot.bench").joinpath(f"schema_v{SCHEMA_VERSION}.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def validate(report: dict[str, Any]) -> str | None:
    """Check `report` against the schema: None when valid, else what is wrong and where.

    Raises ImportError when jsonschema (the `bench` extra) is not installed.
    """
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(report), key=lambda e: list(e.absolute_path))
    if not errors:
        return None
    return "; ".join(
        f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in errors[:5]
    )


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def median(values: list[float]) -> float | None:
    """The median, to 0.1 for figures of 10 or more (ms), else to 4 decimals (RTF, WER)."""
    if not values:
        return None
    middle = statistics.median(values)
    return round(middle, 1) if abs(middle) >= 10 else round(middle, 4)


class MemorySampler:
    """Peak RSS of this process and peak NVML used memory while the block runs.

    A background thread samples every `interval_s`, so a peak between two readings of a
    short burst can be missed; 50 ms is well under any model load or decode.
    """

    def __init__(self, interval_s: float = 0.05, gpu_index: int = 0) -> None:
        self._interval_s = interval_s
        self._gpu_index = gpu_index
        self._process = psutil.Process()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-memory", daemon=True)
        self._handle: Any = None
        self.rss_before_mib = 0.0
        self.rss_peak_mib = 0.0
        self.vram_before_mib: float | None = None
        self.vram_peak_mib: float | None = None

    def _vram_mib(self) -> float | None:
        if self._handle is None:
            return None
        import pynvml

        return float(pynvml.nvmlDeviceGetMemoryInfo(self._handle).used) / 2**20

    def _sample(self) -> None:
        self.rss_peak_mib = max(self.rss_peak_mib, self._process.memory_info().rss / 2**20)
        vram = self._vram_mib()
        if vram is not None:
            self.vram_peak_mib = max(self.vram_peak_mib or 0.0, vram)

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self._sample()

    def __enter__(self) -> MemorySampler:
        try:
            import pynvml

            pynvml.nvmlInit()
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(self._gpu_index)
        except Exception:  # no NVIDIA driver (or nvidia-ml-py): VRAM is not sampled
            self._handle = None
        self.rss_before_mib = self.rss_peak_mib = self._process.memory_info().rss / 2**20
        self.vram_before_mib = self._vram_mib()
        self.vram_peak_mib = self.vram_before_mib
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        if self._handle is not None:
            import pynvml

            pynvml.nvmlShutdown()

    def summary(self) -> dict[str, float | None]:
        """MiB: this process's RSS before and at its peak; the GPU's used memory likewise."""

        def mib(value: float | None) -> float | None:
            return None if value is None else round(value, 1)

        return {
            "rss_before_mib": mib(self.rss_before_mib),
            "rss_peak_mib": mib(self.rss_peak_mib),
            "vram_before_mib": mib(self.vram_before_mib),
            "vram_peak_mib": mib(self.vram_peak_mib),
        }


def skipped(reason: str, **identity: Any) -> dict[str, Any]:
    """A row that was not measured, and why (never left out silently)."""
    return {**identity, "skipped": reason}


def variant(settings: Settings, updates: dict[str, Any]) -> Settings:
    """`settings` with nested `updates` applied ({"stt": {"whisper": {"model": "base"}}})."""

    def merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
        merged = dict(base)
        for key, value in changes.items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = merge(merged[key], value)
            else:
                merged[key] = value
        return merged

    # Secrets are not settings to vary (and not all of them survive a dump): carried over.
    changed = type(settings).model_validate(
        merge(settings.model_dump(exclude={"secrets"}), updates)
    )
    return changed.model_copy(update={"secrets": settings.secrets})
