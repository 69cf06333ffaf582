"""GPU detection from recorded NVML readings, and the CUDA probe that must never crash us."""

from __future__ import annotations

import json
import sys
from typing import Any

import pynvml
import pytest

from tests import nvml_readings as cards
from tests.helpers import run_voicebot
from voicebot.gpu import CudaStatus, assumed_report, detect, probe_cuda, read_nvml


def test_reads_every_gpu_with_derived_capabilities(fake_nvml: Any) -> None:
    fake_nvml(cards.T4, cards.A100_80)
    report = read_nvml()
    assert report.driver_version == "550.54.15" and report.cuda_version == "12.4"
    t4, a100 = report.gpus
    assert (t4.name, t4.total_mib, t4.free_mib) == ("Tesla T4", 15109, 14839)
    assert t4.compute_capability == (7, 5)
    assert t4.capabilities == {
        "fp16": True,
        "int8": True,
        "tensor_cores": True,
        "bf16": False,
        "flash_attention": False,
    }
    assert a100.index == 1 and a100.capabilities["bf16"] and a100.capabilities["flash_attention"]
    assert report.to_json()["gpus"][1]["compute_capability"] == "8.0"
    assert not report.cuda.usable  # nothing is usable until the probe says so


def test_no_nvml_means_no_gpus_with_a_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing() -> None:
        raise pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)

    monkeypatch.setattr(pynvml, "nvmlInit", missing)
    report = detect()
    assert report.gpus == [] and not report.cuda.usable
    assert "NVML unavailable" in report.cuda.reason


def test_probe_that_aborts_is_a_reason_not_a_crash(fake_nvml: Any) -> None:
    fake_nvml(cards.A100_40)
    report = detect(probe_command=[sys.executable, "-c", "import os; os.abort()"])
    assert len(report.gpus) == 1
    assert not report.cuda.usable
    assert "SIGABRT" in report.cuda.reason and "cuDNN" in report.cuda.reason


def test_probe_that_fails_reports_its_output() -> None:
    status = probe_cuda(
        [
            sys.executable,
            "-c",
            "import sys; sys.stderr.write('libcudnn_ops.so.9: cannot open'); sys.exit(3)",
        ]
    )
    assert not status.usable
    assert "status 3" in status.reason and "libcudnn_ops.so.9" in status.reason


def test_probe_that_hangs_times_out() -> None:
    status = probe_cuda([sys.executable, "-c", "import time; time.sleep(30)"], timeout_s=1)
    assert status == CudaStatus(False, "CUDA probe did not finish within 1 s")


def test_real_probe_on_this_machine() -> None:
    """The real probe subprocess runs and answers; without a GPU it says why CUDA is unusable."""
    status = probe_cuda()
    if read_nvml().gpus:
        assert status.usable, status.reason
    else:
        assert not status.usable and "CUDA device" in status.reason


@pytest.mark.parametrize(
    ("card", "known"),
    [
        (cards.T4, "T4"),
        (cards.L4, "L4"),
        (cards.A10G, "A10G"),
        (cards.RTX_4090, "RTX 4090"),
        (cards.A100_40, "A100-40GB"),
        (cards.A100_80, "A100-80GB"),
        (cards.H100, "H100"),
        (cards.H200, "H200"),
    ],
)
def test_assume_gpu_takes_the_names_nvidia_smi_prints(card: cards.Card, known: str) -> None:
    gpu = assumed_report(card.name).gpus[0]
    assert gpu.name == f"NVIDIA {known}"
    assert gpu.compute_capability == card.compute_capability


def test_assumed_gpu_names() -> None:
    assert assumed_report("rtx 4090").gpus[0].compute_capability == (8, 9)
    assert assumed_report("NVIDIA H100").gpus[0].total_mib == 81559
    assert assumed_report("none").gpus == []
    with pytest.raises(ValueError, match="known: T4"):
        assumed_report("GTX 480")


@pytest.mark.slow
def test_gpu_info_json_matches_what_nvml_sees() -> None:
    done = run_voicebot("gpu-info", "--json", timeout=60)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["reason"]
    seen = read_nvml().gpus
    assert report["gpu_count"] == len(seen)
    if not seen:
        assert report["gpus"] == [] and report["cuda_usable"] is False
    else:
        assert [g["name"] for g in report["gpus"]] == [g.name for g in seen]


@pytest.mark.slow
@pytest.mark.gpu
def test_gpu_info_reports_a_usable_gpu() -> None:
    report = json.loads(run_voicebot("gpu-info", "--json", timeout=180).stdout)
    assert report["gpu_count"] >= 1 and report["cuda_usable"], report["reason"]
