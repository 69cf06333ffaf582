"""Logging set-up, done once at the edge (CLI): loguru, as Pipecat uses."""

from __future__ import annotations

import copy
import os
import sys
from typing import TYPE_CHECKING, Any, TextIO

from loguru import logger

if TYPE_CHECKING:
    from loguru import Record


def setup_logging(level: str = "INFO") -> None:
    """Send logs to stderr at `level`, with each record's bound fields appended.

    Pipecat's warnings about routine events (pipecat_compat.ROUTINE_WARNINGS) are shown
    only when `level` is DEBUG or lower, as if they had been logged at DEBUG.
    """
    logger.remove()
    threshold = logger.level(level.upper()).no
    debug = logger.level("DEBUG").no

    def keep(record: Record) -> bool:
        name = record["name"] or ""
        if threshold > debug and record["level"].name == "WARNING" and name.startswith("pipecat"):
            # Imported only once Pipecat logs: it takes ~0.5 s, which every command would pay.
            from voicebot.pipecat_compat import is_routine_warning

            return not is_routine_warning(record["name"], record["message"])
        return True

    logger.add(
        _stderr_copy(),
        level=level,
        filter=keep,
        format="{time:HH:mm:ss.SSS} | {level: <7} | {name}:{line} - {message} {extra}",
    )


# The copy of file descriptor 2 the logs go to, and what it was a copy of.
_copy: tuple[tuple[int, int], TextIO] | None = None


def _stderr_copy() -> TextIO:
    """stderr through a file descriptor of its own, where stderr is a file descriptor.

    llama-cpp-python loads a model with fd 2 (and `sys.stderr`) pointed at /dev/null, to
    hide llama.cpp's chatter; that is process-wide, so without a copy every line another
    thread logged meanwhile (the other models loading beside it) was lost.
    """
    global _copy
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # pytest's capsys, a StringIO
        return sys.stderr
    status = os.fstat(fd)
    target = (status.st_dev, status.st_ino)
    if _copy is None or _copy[0] != target:
        _copy = (target, os.fdopen(os.dup(fd), "w", buffering=1, errors="backslashreplace"))
    return _copy[1]


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's own logging set-up, with its handlers on the interpreter's original
    stdout and stderr (`sys.__stdout__`, `sys.__stderr__`) instead of whatever
    `sys.stdout`/`sys.stderr` are when the server is configured.

    `voicebot serve` configures uvicorn while the models load, and while llama-cpp-python
    loads one, `sys.stdout` and `sys.stderr` are /dev/null files (see `_stderr_copy`).
    A server configured then had lost its request and WebSocket lines for good.
    """
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    for handler in config["handlers"].values():
        stream = handler.get("stream")
        if stream in ("ext://sys.stdout", "ext://sys.stderr"):
            handler["stream"] = stream.replace("ext://sys.", "ext://sys.__") + "__"
    return config
