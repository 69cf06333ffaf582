"""Turns every `auto` setting into a concrete value for the GPU found, with the reason why.

The decision table (README_PIPECAT.md, "GPU auto-tuning") in code. Explicit values in a
profile, the environment or the CLI are never touched: only fields still set to `auto`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from voicebot.config import AUTO, Settings
from voicebot.errors import ConfigError
from voicebot.gpu import GpuInfo, GpuReport
from voicebot.providers import spec as providers
from voicebot.providers.spec import Stage

GIB = 1024  # MiB

# Whisper weights at 16-bit precision, MiB: what STT holds on the GPU before any batch.
WHISPER_VRAM_MIB = {
    "tiny": 80,
    "base": 150,
    "small": 500,
    "medium": 1500,
    "large-v3": 3100,
    "large-v3-turbo": 1650,
}
# Head-room left for the CUDA context, allocator fragmentation and activations, MiB.
HEADROOM_MIB = 1024
# Sessions one GPU serves at the target turn latency (Cloud Run's containerConcurrency for
# an L4 in deployment/gcp/service.yaml; not yet measured on every card).
SESSIONS_PER_GPU = 4
# Fallback order when the preferred Whisper model is not on disk: bigger to smaller.
WHISPER_LADDER = ("large-v3-turbo", "large-v3", "medium", "small", "base", "tiny")
# `stt.whisper.encoder_window_secs: auto` for tiny models on the CPU, where the encoder is
# most of a decode: measured on tiny.en. Whisper base with a 15 s window misheard two of
# the five bundled questions ("the capital of friends"), and on a GPU the encoder is
# cheap: everything else keeps Whisper's 30 s.
CPU_TINY_WINDOW_SECS = 15.0


def encoder_window(setting: float | str, device: str, model: str) -> float:
    """Seconds Whisper's encoder sees for `stt.whisper.encoder_window_secs` (auto or a
    number), `model` and `device` (providers/stt/short_window.py)."""
    if isinstance(setting, int | float):
        return float(setting)
    tiny = whisper_family(model) == "tiny"
    return CPU_TINY_WINDOW_SECS if device == "cpu" and tiny else 30.0


@dataclass
class Tuned:
    """The settings with every `auto` resolved, and the reason for each choice."""

    settings: Settings
    decisions: dict[str, str] = field(default_factory=dict)
    report: GpuReport = field(default_factory=GpuReport)


def whisper_family(model: str) -> str:
    return model.removesuffix(".en")


def _english_variant(family: str, language: str) -> str:
    # English-only checkpoints exist up to medium and are more accurate for English.
    if language == "en" and family in ("tiny", "base", "small", "medium"):
        return f"{family}.en"
    return family


def _pick_gpu(report: GpuReport) -> GpuInfo | None:
    usable = report.usable_gpus
    return max(usable, key=lambda g: (g.free_mib, -g.index)) if usable else None


def _preferred_whisper(gpu: GpuInfo | None) -> tuple[str, str]:
    if gpu is None:
        return "tiny", "CPU: the smallest model keeps STT near 0.3 s per turn on 2 cores"
    cc, total = gpu.compute_capability, gpu.total_mib
    if cc >= (8, 0) and total >= 16 * GIB:
        return "large-v3-turbo", f"{gpu.name}: high-end card (>= 16 GB, compute {cc[0]}.{cc[1]})"
    if cc >= (8, 0):
        return "medium", f"{gpu.name}: fast card with under 16 GB"
    if cc >= (7, 0) and total >= 12 * GIB:
        return "small", f"{gpu.name}: T4-class card (compute {cc[0]}.{cc[1]}), latency first"
    return "base", f"{gpu.name}: small or old card"


def _compute_type(gpu: GpuInfo | None) -> tuple[str, str]:
    if gpu is None:
        return "int8", "CPU: int8 is the fastest CTranslate2 precision on CPUs"
    caps = gpu.capabilities
    cc = ".".join(map(str, gpu.compute_capability))
    if caps["bf16"]:
        return "bfloat16", f"compute {cc} supports bf16"
    if caps["tensor_cores"]:
        return "float16", "fp16 tensor cores, no bf16 (T4/V100 class)"
    if caps["int8"]:
        return "int8_float32", "no tensor cores: int8 weights, fp32 compute"
    return "float32", "no fast reduced precision on this card"


def _batch_size(gpu: GpuInfo | None, stt_mib: int) -> tuple[int, str]:
    if gpu is None:
        return 1, "CPU: one utterance at a time"
    spare = gpu.free_mib - stt_mib - HEADROOM_MIB
    for size, need in ((16, 24 * GIB), (8, 12 * GIB), (4, 6 * GIB)):
        if spare >= need:
            return size, f"{spare // GIB} GiB free after the model"
    return 2, f"only {max(spare, 0) // GIB} GiB free after the model"


def autotune(
    settings: Settings,
    report: GpuReport,
    *,
    whisper_available: Callable[[str], bool] = lambda name: True,
    llm_file_mib: int | None = None,
) -> Tuned:
    """Resolve every `auto` in `settings` for `report`; explicit values win untouched.

    `whisper_available(name)` says whether a Whisper model can be loaded without a
    download; auto never picks one that cannot. `llm_file_mib` is the size of the local
    GGUF, used to decide whether llama.cpp layers fit on the GPU.
    """
    decisions: dict[str, str] = {}
    updates: dict[str, dict[str, Any]] = {"whisper": {}, "tts": {}, "llm": {}}
    gpu = _pick_gpu(report)
    stt, tts, llm = settings.stt.whisper, settings.tts, settings.llm
    where = "no usable GPU" if gpu is None else f"GPU {gpu.index} {gpu.name}"

    if stt.device == AUTO:
        updates["whisper"]["device"] = "cpu" if gpu is None else "cuda"
        decisions["stt.whisper.device"] = f"{where}; {report.cuda.reason}"
    stt_on_gpu = (updates["whisper"].get("device", stt.device)) == "cuda"
    stt_gpu = gpu if stt_on_gpu else None
    if stt.device_index == AUTO:
        updates["whisper"]["device_index"] = stt_gpu.index if stt_gpu else 0
        decisions["stt.whisper.device_index"] = (
            f"GPU {stt_gpu.index} has the most free memory ({stt_gpu.free_mib} MiB) of "
            f"{len(report.usable_gpus)}"
            if stt_gpu
            else "CPU: no device index"
        )

    if stt.compute_type == AUTO:
        updates["whisper"]["compute_type"], decisions["stt.whisper.compute_type"] = _compute_type(
            stt_gpu
        )

    model = stt.model
    if model == AUTO:
        family, why = _preferred_whisper(stt_gpu)
        candidates = WHISPER_LADDER[WHISPER_LADDER.index(family) :]
        names = [_english_variant(f, settings.stt.language) for f in candidates]
        model = next((n for n in names if whisper_available(n)), names[-1])
        if model != names[0]:
            why += (
                f"; {names[0]} is not on disk (stt.whisper.models_dir), "
                f"so the best available: {model} (`voicebot models pull {names[0]}` fetches it)"
            )
        updates["whisper"]["model"] = model
        decisions["stt.whisper.model"] = why
    stt_mib = WHISPER_VRAM_MIB.get(whisper_family(model), WHISPER_VRAM_MIB["large-v3"])

    if stt.encoder_window_secs == AUTO:
        device = updates["whisper"].get("device", stt.device)
        window = encoder_window(AUTO, device, model)
        updates["whisper"]["encoder_window_secs"] = window
        decisions["stt.whisper.encoder_window_secs"] = (
            f"{window:g} s: {model} on the CPU, where the encoder is most of a decode"
            if window < 30
            else f"30 s (Whisper's whole window): {model} on {device}"
        )

    if stt.batch_size == AUTO:
        updates["whisper"]["batch_size"], decisions["stt.whisper.batch_size"] = _batch_size(
            stt_gpu, stt_mib
        )

    # Only a local voice that declares its GPU memory runs on the GPU (Kokoro; Piper's
    # ONNX voice is faster on the CPU than the transfer costs, cloud voices run elsewhere).
    # Asking means importing the provider's module (Pipecat: ~0.5 s): only with a GPU.
    tts_mib = _vram_mib(settings, "tts", tts.provider) if gpu is not None else None
    if tts.device == AUTO:
        tts_on_gpu = gpu is not None and tts_mib is not None
        updates["tts"]["device"] = "cuda" if tts_on_gpu else "cpu"
        why_cpu = where if gpu is None else f"{tts.provider} has no GPU path"
        decisions["tts.device"] = (
            f"{tts.provider} on {where}" if tts_on_gpu else f"{tts.provider} on the CPU ({why_cpu})"
        )
    else:
        tts_on_gpu = tts.device == "cuda"

    if llm.llama_cpp.gpu_layers == AUTO:
        others = (stt_mib if stt_on_gpu else 0) + ((tts_mib or 0) if tts_on_gpu else 0)
        layers, why = _llm_offload(gpu, llm.provider, llm_file_mib, others)
        updates["llm"]["llama_cpp"] = llm.llama_cpp.model_copy(update={"gpu_layers": layers})
        decisions["llm.llama_cpp.gpu_layers"] = why

    if llm.transformers.device == AUTO:
        device = "cuda" if gpu is not None else "cpu"
        updates["llm"]["transformers"] = llm.transformers.model_copy(update={"device": device})
        decisions["llm.transformers.device"] = f"{where}: transformers on {device}"

    if settings.server.max_sessions == AUTO:
        sessions, why = _max_sessions(report, os.cpu_count() or 1)
        updates["server"] = {"max_sessions": sessions}
        decisions["server.max_sessions"] = why

    whisper = settings.stt.whisper.model_copy(update=updates.pop("whisper"))
    updates["stt"] = {"whisper": whisper}
    tuned = settings.model_copy(
        update={
            section: getattr(settings, section).model_copy(update=values)
            for section, values in updates.items()
            if values
        }
    )
    return Tuned(settings=tuned, decisions=decisions, report=report)


def cpu_max_sessions(cores: int) -> int:
    """One session per core, at least 2 (README_PIPECAT.md, "Limits", has the measurement)."""
    return max(2, cores)


def _max_sessions(report: GpuReport, cores: int) -> tuple[int, str]:
    gpus = len(report.usable_gpus)
    if gpus:
        n = SESSIONS_PER_GPU * gpus
        return n, f"{gpus} GPU(s): {SESSIONS_PER_GPU} sessions each keep turn latency"
    n = cpu_max_sessions(cores)
    return n, f"CPU only, {cores} cores: one session per core, at least 2"


def _vram_mib(settings: Settings, stage: Stage, provider: str) -> int | None:
    """What `provider` holds on a GPU, or None when it has no GPU path (or is not installed)."""
    try:
        spec = providers.get(stage, provider)
    except ConfigError:
        return None  # start-up says how to install it; tuning goes on without it
    return spec.vram_mib(settings) if spec.vram_mib is not None else None


def _llm_offload(
    gpu: GpuInfo | None, provider: str, file_mib: int | None, others_mib: int
) -> tuple[int, str]:
    if provider != "llama_cpp":
        return 0, f"llm.provider={provider} does not run llama.cpp in this process"
    if gpu is None:
        return 0, "no usable GPU: llama.cpp runs on the CPU"
    if file_mib is None:
        return 0, "local GGUF size unknown: llama.cpp stays on the CPU"
    others = others_mib + HEADROOM_MIB
    need = int(file_mib * 1.2)  # weights plus KV cache and scratch at the default context
    spare = gpu.free_mib - others
    if spare >= need:
        return -1, f"the {file_mib} MiB GGUF fits beside STT/TTS ({spare} MiB spare)"
    return 0, f"the {file_mib} MiB GGUF does not fit beside STT/TTS ({spare} MiB spare)"


def resolve(settings: Settings, *, assume_gpu: str | None = None, probe: bool = True) -> Tuned:
    """Detect the GPUs (or take `assume_gpu` from KNOWN_GPUS) and auto-tune `settings`.

    Raises ValueError for an unknown `assume_gpu` name.
    """
    from voicebot.errors import ModelNotFoundError
    from voicebot.gpu import assumed_report, detect
    from voicebot.model_files import gguf_file, whisper_on_disk

    report = assumed_report(assume_gpu) if assume_gpu else detect(probe=probe)
    try:
        path = gguf_file(settings.llm.llama_cpp.model_path, "llm.llama_cpp.model_path")
        llm_mib: int | None = path.stat().st_size // 2**20
    except ModelNotFoundError:
        llm_mib = None
    return autotune(
        settings,
        report,
        whisper_available=lambda name: whisper_on_disk(name, settings),
        llm_file_mib=llm_mib,
    )
