"""The ONNX models Pipecat ships for VAD and turn detection, loaded as shared sessions."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from pathlib import Path

import onnxruntime

from voicebot.errors import ModelNotFoundError
from voicebot.model_files import package_dir


def _pipecat_data_file(package: str, name: str) -> Path:
    folder = package_dir(package)
    if folder is None or not (folder / name).is_file():
        raise ModelNotFoundError(
            f"{name} is missing from pipecat-ai ({package}); reinstall pipecat-ai"
        )
    return folder / name


def _onnx_session(path: Path) -> onnxruntime.InferenceSession:
    # One thread each: these models are tiny (Silero 2 MB, smart-turn 8 MB) and run per
    # 32 ms frame; more threads only add spinning and contention with Whisper and the LLM.
    options = onnxruntime.SessionOptions()
    options.inter_op_num_threads = 1
    options.intra_op_num_threads = 1
    return onnxruntime.InferenceSession(
        str(path), sess_options=options, providers=["CPUExecutionProvider"]
    )


def _once(
    load: Callable[[], onnxruntime.InferenceSession],
) -> Callable[[], onnxruntime.InferenceSession]:
    """`load` run at most once per process; callers that come meanwhile wait for that copy.

    Models load side by side (SharedModels.load) and the Whisper engine's loader asks for
    Silero as well, so two threads may ask at the same time.
    """
    lock = threading.Lock()
    cached = functools.cache(load)

    @functools.wraps(load)
    def loaded() -> onnxruntime.InferenceSession:
        with lock:
            return cached()

    return loaded


# One session per model per process: the Whisper engine's speech gate and every
# session's VAD share Silero (ONNX Runtime sessions are thread-safe; the recurrent state
# lives in each caller's SileroStream).
@_once
def load_silero_session() -> onnxruntime.InferenceSession:
    return _onnx_session(_pipecat_data_file("pipecat.audio.vad.data", "silero_vad.onnx"))


@_once
def load_smart_turn_session() -> onnxruntime.InferenceSession:
    path = _pipecat_data_file("pipecat.audio.turn.smart_turn.data", "smart-turn-v3.2-cpu.onnx")
    return _onnx_session(path)
