"""Thread priorities: heavy compute yields the CPU to audio streaming.

On a machine with few cores, Whisper and the LLM can use every core while another
session's reply is being synthesised and paced out; that session then hears gaps. The
compute threads (the Whisper engine's worker, each in-process LLM's thread, and the
threads their libraries start from them) run at a higher nice value than the event loop
and the TTS threads, so audio goes first and compute takes whatever is left.
Raising a thread's nice value needs no privileges; on systems without per-thread
priorities this does nothing.

Two more ways the models share the cores: local LLMs hold still while a reply's first
audio is synthesised (`FirstAudioPriority`), and the TTS models' ONNX Runtime workers
sleep between operators instead of spinning (`sleeping_onnx_options`).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from loguru import logger

if TYPE_CHECKING:
    import onnxruntime


def yield_to_audio(nice: int) -> None:
    """Raise the calling thread's nice value by `nice` (0 leaves it as it is)."""
    if nice <= 0 or not hasattr(os, "setpriority"):
        return
    tid = threading.get_native_id()
    try:
        current = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, current + nice))
    except OSError as e:  # some sandboxes refuse it: run at the normal priority
        logger.bind(error=str(e)).debug("could not lower a compute thread's priority")


def sleeping_onnx_options(threads: int = 0) -> onnxruntime.SessionOptions:
    """ONNX Runtime options for a model that shares the cores (TTS beside the LLM).

    By default ONNX Runtime's intra-op workers spin between operators instead of sleeping.
    With a core taken by the LLM writing the rest of the reply, Piper's second worker spun
    while the first waited for the core: 390 ms of CPU per sentence against 335 ms with
    spinning off, and slower too (309 against 244 ms); alone, 295 against 300 ms of CPU and
    153 against 161 ms (`README_PIPECAT.md`, "CPU per turn"). `threads`: intra-op threads
    (0: ONNX Runtime's default, one per physical core).
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


class FirstAudioPriority:
    """While a reply's first audio is being synthesised on the CPU, local LLMs hold still.

    On a CPU an in-process LLM and the TTS share the cores: while the first clause is
    synthesised the LLM keeps generating the rest of the reply, and the first audio (what
    the person waits for) comes ~100 ms later than if the LLM waited, as a hand-written
    loop's does. The LLM is far ahead of speech (~25 tokens/s against ~3 spoken), so
    holding it for one clause's synthesis costs no audio later. A local LLM's generation
    thread calls `wait()` between tokens; it never waits longer than `max_wait_s` in one go.
    """

    def __init__(self, max_wait_s: float = 1.0) -> None:
        self.max_wait_s = max_wait_s
        self._busy = 0
        self._lock = threading.Lock()
        self._idle = threading.Event()
        self._idle.set()

    @contextlib.contextmanager
    def synthesising(self) -> Iterator[None]:
        """Hold local LLMs while the body runs (the TTS is making a reply's first audio)."""
        with self._lock:
            self._busy += 1
            self._idle.clear()
        try:
            yield
        finally:
            with self._lock:
                self._busy -= 1
                if self._busy == 0:
                    self._idle.set()

    @property
    def busy(self) -> bool:
        return not self._idle.is_set()

    def wait(self) -> None:
        """Block the calling (generation) thread while first audio is being made."""
        self._idle.wait(self.max_wait_s)


# One per process: every session's LLM and TTS share the same cores.
FIRST_AUDIO = FirstAudioPriority()
