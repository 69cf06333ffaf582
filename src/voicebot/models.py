"""The one loaded copy of each model, shared by every session: loaded and warmed once."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from loguru import logger

from voicebot.config import Settings
from voicebot.errors import ModelNotFoundError
from voicebot.model_files import (
    check_models,
    find_whisper,
    kokoro_files,
    llm_model_file,
    llm_providers,
    package_dir,
    piper_voice_file,
    transformers_model_path,
    tts_providers,
    whisper_model_dir,
)
from voicebot.stt_engine import EngineOptions, WhisperEngine

if TYPE_CHECKING:
    import onnxruntime
    from kokoro_onnx import Kokoro
    from llama_cpp import Llama
    from piper import PiperVoice

    from voicebot.processors.llm_transformers import TransformersModel


def _cpu_threads(configured: int) -> int:
    return configured or max(1, os.cpu_count() or 1)


Loader = Callable[[], Any]


def _llm_loaders(settings: Settings) -> dict[str, Loader]:
    """Loaders for the local LLMs `llm.provider` / `llm.fallback` use (None for the others)."""
    llms = llm_providers(settings)
    gguf = llm_model_file(settings) if "llama_cpp" in llms else None
    return {
        "llm": lambda: _load_llama(settings, gguf) if gguf else None,
        "transformers": lambda: _load_transformers(settings) if "transformers" in llms else None,
    }


def _voice_loaders(settings: Settings) -> dict[str, Loader]:
    """Loaders for the local voices `tts.provider` / `tts.fallback` use (None for the others)."""
    providers = tts_providers(settings)
    on_gpu = settings.tts.device == "cuda"
    return {
        "piper": lambda: _load_piper(settings, on_gpu) if "piper" in providers else None,
        "kokoro": lambda: _load_kokoro(settings, on_gpu) if "kokoro" in providers else None,
    }


def _llm_name(settings: Settings) -> str:
    return llm_model_file(settings).stem if "llama_cpp" in llm_providers(settings) else ""


@dataclass
class Voices:
    """Just the local TTS voices `tts.provider` / `tts.fallback` need (for `voicebot say`)."""

    piper: PiperVoice | None
    kokoro: Kokoro | None

    @classmethod
    def load(cls, settings: Settings) -> Voices:
        return cls(**{name: load() for name, load in _voice_loaders(settings).items()})


@dataclass
class LocalLLMModels:
    """Just the local LLMs `llm.provider` / `llm.fallback` need (for `voicebot chat`)."""

    llm: Llama | None
    llm_name: str
    transformers: TransformersModel | None

    @classmethod
    def load(cls, settings: Settings) -> LocalLLMModels:
        loaded = {name: load() for name, load in _llm_loaders(settings).items()}
        return cls(llm_name=_llm_name(settings), **loaded)


@dataclass
class SharedModels:
    """Every model a session needs, loaded once per process. Sessions only borrow them."""

    stt: WhisperEngine
    llm: Llama | None
    piper: PiperVoice | None
    kokoro: Kokoro | None
    silero_session: onnxruntime.InferenceSession
    smart_turn_session: onnxruntime.InferenceSession | None
    llm_name: str = "llama.cpp"
    transformers: TransformersModel | None = None
    # tts.filler.phrase, synthesised at start-up (None when the filler is off).
    filler: bytes | None = None
    load_ms: dict[str, float] = field(default_factory=dict)

    @classmethod
    def load(cls, settings: Settings) -> SharedModels:
        """Load every model named by resolved `settings`; ConfigError names what is missing."""
        check_models(settings)
        timings: dict[str, float] = {}
        loaded: dict[str, Any] = {}
        loaders: dict[str, Loader] = {
            "silero": load_silero,
            "whisper": lambda: load_stt_engine(settings, loaded["silero"]),
            **_llm_loaders(settings),
            **_voice_loaders(settings),
            "smart_turn": lambda: _load_smart_turn() if settings.turn.smart_turn else None,
        }
        for name, loader in loaders.items():
            start = time.perf_counter()
            loaded[name] = loader()
            timings[name] = (time.perf_counter() - start) * 1000
            logger.bind(model=name, load_ms=round(timings[name])).info("model loaded")
        models = cls(
            stt=loaded["whisper"],
            llm=loaded["llm"],
            piper=loaded["piper"],
            kokoro=loaded["kokoro"],
            silero_session=loaded["silero"],
            smart_turn_session=loaded["smart_turn"],
            llm_name=_llm_name(settings),
            transformers=loaded["transformers"],
            load_ms=timings,
        )
        from voicebot.tts_factory import filler_audio

        models.filler = filler_audio(settings, models)
        return models

    def warm(self) -> dict[str, float]:
        """Run each model once so the first real turn pays no allocation or compile costs."""
        timings: dict[str, float] = {}

        start = time.perf_counter()
        self.stt.warm()
        timings["whisper"] = (time.perf_counter() - start) * 1000

        if self.llm is not None:
            start = time.perf_counter()
            for _ in self.llm.create_chat_completion(
                messages=[{"role": "user", "content": "Hi"}], max_tokens=4, stream=True
            ):
                pass
            timings["llm"] = (time.perf_counter() - start) * 1000
        if self.transformers is not None:
            start = time.perf_counter()
            shared = self.transformers
            inputs = shared.tokenizer("Hi", return_tensors="pt").to(shared.device)
            shared.model.generate(**inputs, max_new_tokens=2, do_sample=False)
            timings["transformers"] = (time.perf_counter() - start) * 1000

        if self.piper is not None:
            start = time.perf_counter()
            for _ in self.piper.synthesize("Hello."):
                pass
            timings["piper"] = (time.perf_counter() - start) * 1000
        if self.kokoro is not None:
            start = time.perf_counter()
            self.kokoro.create("Hello.", voice=next(iter(self.kokoro.voices)), lang="en-us")
            timings["kokoro"] = (time.perf_counter() - start) * 1000

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


def load_stt_engine(
    settings: Settings, vad_session: onnxruntime.InferenceSession | None = None
) -> WhisperEngine:
    """The shared Whisper engine for `stt.*`; a GPU that fails to load it leaves it on the CPU."""
    from faster_whisper import WhisperModel

    stt = settings.stt
    model_dir = whisper_model_dir(settings)
    name = stt.model_path.name if stt.model_path else stt.model
    threads = _cpu_threads(stt.cpu_threads)
    device, compute_type = stt.device, stt.compute_type
    index = stt.device_index if isinstance(stt.device_index, int) else 0
    try:
        model = WhisperModel(
            str(model_dir),
            device=device,
            device_index=index,
            compute_type=compute_type,
            cpu_threads=threads,
            local_files_only=True,
        )
    except (RuntimeError, ValueError, OSError) as e:
        if device != "cuda":
            raise
        logger.bind(reason=str(e)).error(
            "Whisper could not load on CUDA: running on the CPU (int8)"
        )
        device, compute_type = "cpu", "int8"
        model = WhisperModel(str(model_dir), device="cpu", compute_type="int8", cpu_threads=threads)

    def cpu_fallback() -> tuple[WhisperModel, str, str, str]:
        small = find_whisper("tiny.en", settings) or model_dir
        fallback = WhisperModel(str(small), device="cpu", compute_type="int8", cpu_threads=threads)
        return fallback, small.name if small != model_dir else name, "cpu", "int8"

    batch = stt.batch_size if isinstance(stt.batch_size, int) else 1
    return WhisperEngine(
        model,
        name=name,
        device=device,
        compute_type=compute_type,
        options=EngineOptions(
            language=stt.language,
            no_speech_prob=stt.no_speech_prob,
            log_prob_threshold=stt.log_prob_threshold,
            compression_ratio_threshold=stt.compression_ratio_threshold,
            max_utterance_secs=stt.max_utterance_secs,
            # On a CPU a batch costs as much as its parts and everyone in it waits for the
            # slowest (measured: no throughput gain, higher mean latency), so auto picks 1.
            max_batch_size=max(batch, 1),
        ),
        vad_session=vad_session,
        fallback=cpu_fallback if device == "cuda" else None,
    )


def _load_transformers(settings: Settings) -> TransformersModel:
    from voicebot.processors.llm_transformers import TransformersModel

    device = settings.llm.transformers.device
    return TransformersModel.load(
        transformers_model_path(settings), "cuda" if device == "cuda" else "cpu"
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


def _load_piper(settings: Settings, use_cuda: bool) -> PiperVoice:
    from piper import PiperVoice

    return PiperVoice.load(piper_voice_file(settings), use_cuda=use_cuda)


def _load_kokoro(settings: Settings, use_cuda: bool) -> Kokoro:
    import onnxruntime
    from kokoro_onnx import Kokoro

    model, voices = kokoro_files(settings)
    providers = ["CPUExecutionProvider"]
    if use_cuda and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    elif use_cuda:
        logger.warning(
            "tts.device=cuda but onnxruntime has no CUDA provider: Kokoro runs on the CPU"
        )
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = _cpu_threads(0)
    session = onnxruntime.InferenceSession(str(model), sess_options=options, providers=providers)
    return Kokoro.from_session(session, str(voices))


def _onnx_session(path: Path, threads: int) -> onnxruntime.InferenceSession:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.inter_op_num_threads = 1
    options.intra_op_num_threads = threads
    return onnxruntime.InferenceSession(
        str(path), sess_options=options, providers=["CPUExecutionProvider"]
    )


def _pipecat_data_file(package: str, name: str) -> Path:
    folder = package_dir(package)
    if folder is None or not (folder / name).is_file():
        raise ModelNotFoundError(
            f"{name} is missing from pipecat-ai ({package}); reinstall pipecat-ai"
        )
    return folder / name


def load_silero() -> onnxruntime.InferenceSession:
    return _onnx_session(_pipecat_data_file("pipecat.audio.vad.data", "silero_vad.onnx"), 1)


def _load_smart_turn() -> onnxruntime.InferenceSession:
    path = _pipecat_data_file("pipecat.audio.turn.smart_turn.data", "smart-turn-v3.2-cpu.onnx")
    return _onnx_session(path, 1)
