"""Thread priorities: heavy compute yields the CPU to audio streaming.

On a machine with few cores, Whisper and the LLM can use every core while another
session's reply is being synthesised and paced out; that session then hears gaps. The
compute threads (the Whisper engine's worker, each in-process LLM's thread, and the
threads their libraries start from them) run at a higher nice value than the event loop
and the TTS threads, so audio goes first and compute takes whatever is left.
Raising a thread's nice value needs no privileges; on systems without per-thread
priorities this does nothing.
"""

from __future__ import annotations

import os
import threading

from loguru import logger


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
