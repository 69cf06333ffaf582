"""What GPUs this machine has (NVML, no torch) and whether CUDA really works here.

NVML reports the cards; it cannot tell whether CTranslate2 will find cuBLAS and cuDNN.
A missing cuDNN aborts the process that loads it, so that check runs in a subprocess
(`python -m voicebot.cuda_probe`) and its death is reported as a reason, not suffered.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

PROBE_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class GpuInfo:
    """One GPU as NVML reports it."""

    index: int
    name: str
    total_mib: int
    free_mib: int
    compute_capability: tuple[int, int]

    @property
    def capabilities(self) -> dict[str, bool]:
        """Features derived from the compute capability (CUDA's feature tables)."""
        cc = self.compute_capability
        return {
            "fp16": cc >= (5, 3),
            "int8": cc >= (6, 1),
            "tensor_cores": cc >= (7, 0),
            "bf16": cc >= (8, 0),
            "flash_attention": cc >= (8, 0),
        }

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["compute_capability"] = f"{self.compute_capability[0]}.{self.compute_capability[1]}"
        data["capabilities"] = self.capabilities
        return data


@dataclass(frozen=True)
class CudaStatus:
    """Whether CUDA work can run in this environment, and why not when it cannot."""

    usable: bool
    reason: str
    device_count: int = 0


@dataclass
class GpuReport:
    """Everything `voicebot gpu-info` prints and auto-tuning decides from."""

    gpus: list[GpuInfo] = field(default_factory=list)
    driver_version: str | None = None
    cuda_version: str | None = None
    cuda: CudaStatus = CudaStatus(False, "no NVIDIA GPU found")
    source: str = "nvml"

    @property
    def usable_gpus(self) -> list[GpuInfo]:
        return self.gpus if self.cuda.usable else []

    def to_json(self) -> dict[str, Any]:
        return {
            "gpus": [g.to_json() for g in self.gpus],
            "gpu_count": len(self.gpus),
            "driver_version": self.driver_version,
            "cuda_version": self.cuda_version,
            "cuda_usable": self.cuda.usable,
            "reason": self.cuda.reason,
            "source": self.source,
        }


# Common cards, for `--assume-gpu` and for planning a deployment without the hardware:
# (total memory in MiB as NVML reports it, compute capability).
KNOWN_GPUS: dict[str, tuple[int, tuple[int, int]]] = {
    "T4": (15360, (7, 5)),
    "V100": (16384, (7, 0)),
    "A10G": (23028, (8, 6)),
    "A10": (23028, (8, 6)),
    "L4": (23034, (8, 9)),
    "RTX 3090": (24576, (8, 6)),
    "RTX 4090": (24564, (8, 9)),
    "RTX A6000": (49140, (8, 6)),
    "L40S": (46068, (8, 9)),
    "A100-40GB": (40960, (8, 0)),
    "A100-80GB": (81920, (8, 0)),
    "H100": (81559, (9, 0)),
    "H200": (143771, (9, 0)),
}


def _normalise(name: str) -> str:
    text = re.sub(r"[^a-z0-9]", "", name.lower())
    for vendor in ("nvidia", "tesla", "geforce"):
        text = text.replace(vendor, "")
    return text


def known_gpu(name: str) -> str | None:
    """The KNOWN_GPUS key for a card name, as written by people or printed by nvidia-smi.

    "H100", "NVIDIA H100 80GB HBM3", "Tesla T4", "NVIDIA A100-SXM4-40GB" and
    "NVIDIA GeForce RTX 4090" all match; the longest known name the card's name starts
    with wins ("A10G" over "A10", "L40S" over "L4").
    """
    text = _normalise(name)
    if text.startswith("a100"):
        return "A100-40GB" if "40gb" in text else "A100-80GB"
    keys = sorted(KNOWN_GPUS, key=lambda key: -len(_normalise(key)))
    return next((key for key in keys if text.startswith(_normalise(key))), None)


def assumed_report(name: str) -> GpuReport:
    """A report for one card from KNOWN_GPUS (or none at all for `none`), CUDA taken as usable."""
    if name.strip().lower() == "none":
        return GpuReport(cuda=CudaStatus(False, "--assume-gpu none"), source="assumed")
    match = known_gpu(name)
    if match is None:
        known = ", ".join([*KNOWN_GPUS, "none"])
        raise ValueError(
            f"unknown GPU {name!r} for --assume-gpu; known: {known} "
            "(names as nvidia-smi prints them work too)"
        )
    total, cc = KNOWN_GPUS[match]
    gpu = GpuInfo(0, f"NVIDIA {match}", total, total, cc)
    return GpuReport(
        gpus=[gpu],
        cuda=CudaStatus(True, f"assumed {match} (--assume-gpu)", 1),
        source="assumed",
    )


def read_nvml() -> GpuReport:
    """The GPUs NVML reports, without probing CUDA (an empty report when NVML is missing)."""
    try:
        import pynvml
    except ImportError:
        return GpuReport(cuda=CudaStatus(False, "nvidia-ml-py is not installed"))
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as e:
        return GpuReport(cuda=CudaStatus(False, f"NVML unavailable ({e}): no NVIDIA driver here"))
    try:
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            name = pynvml.nvmlDeviceGetName(handle)
            major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
            gpus.append(
                GpuInfo(
                    index=index,
                    name=name.decode() if isinstance(name, bytes) else str(name),
                    total_mib=int(memory.total) // 2**20,
                    free_mib=int(memory.free) // 2**20,
                    compute_capability=(int(major), int(minor)),
                )
            )
        driver = pynvml.nvmlSystemGetDriverVersion()
        cuda = int(pynvml.nvmlSystemGetCudaDriverVersion())
        return GpuReport(
            gpus=gpus,
            driver_version=driver.decode() if isinstance(driver, bytes) else str(driver),
            cuda_version=f"{cuda // 1000}.{cuda % 1000 // 10}",
            cuda=CudaStatus(False, "CUDA not probed yet")
            if gpus
            else CudaStatus(False, "no NVIDIA GPU found"),
        )
    finally:
        pynvml.nvmlShutdown()


def probe_cuda(command: list[str] | None = None, timeout_s: float = PROBE_TIMEOUT_S) -> CudaStatus:
    """Run the CUDA probe in a subprocess; a crash there becomes a reason, not our crash."""
    command = command or [sys.executable, "-m", "voicebot.cuda_probe"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return CudaStatus(False, f"CUDA probe did not finish within {timeout_s:.0f} s")
    except OSError as e:
        return CudaStatus(False, f"CUDA probe could not start: {e}")
    tail = (done.stderr or "").strip().splitlines()[-3:]
    detail = f": {' | '.join(tail)}" if tail else ""
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name
        return CudaStatus(
            False,
            f"CUDA probe was killed by {name} (typically a missing cuDNN/cuBLAS library){detail}",
        )
    try:
        result = json.loads(done.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        return CudaStatus(False, f"CUDA probe exited with status {done.returncode}{detail}")
    return CudaStatus(
        bool(result["usable"]), str(result["reason"]), int(result.get("device_count", 0))
    )


def detect(*, probe: bool = True, probe_command: list[str] | None = None) -> GpuReport:
    """NVML's view of the GPUs plus, when there are any, whether CUDA works for us."""
    report = read_nvml()
    if report.gpus and probe:
        report.cuda = probe_cuda(probe_command)
    return report
