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

    # uvicorn's handlers (`uvicorn_log_config`) get copies taken now, before models load.
    for stream in (sys.__stdout__, sys.__stderr__):
        if stream is not None:
            _copy_now(stream)
    logger.add(
        _copy_now(sys.stderr),
        level=level,
        filter=keep,
        format="{time:HH:mm:ss.SSS} | {level: <7} | {name}:{line} - {message} {extra}",
    )


# Copies of file descriptors 1 and 2, by descriptor, taken when logging is set up.
_copies: dict[int, TextIO] = {}


def _descriptor(stream: TextIO) -> int | None:
    """`stream`'s file descriptor; None if it has none (pytest's capsys, a StringIO)."""
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None


def _copy_now(stream: TextIO) -> TextIO:
    """Take (or keep) a copy of `stream`'s file descriptor; the stream itself if it has
    none. A copy is kept while the descriptor is the same file."""
    fd = _descriptor(stream)
    if fd is None:
        return stream
    kept = _copies.get(fd)
    if kept is None or not os.path.samestat(os.fstat(kept.fileno()), os.fstat(fd)):
        kept = _copies[fd] = os.fdopen(os.dup(fd), "w", buffering=1, errors="backslashreplace")
    return kept


def own_copy(stream: TextIO) -> TextIO:
    """`stream` through the copy of its file descriptor `setup_logging` took.

    llama-cpp-python loads a model with fd 1 and 2 (and `sys.stdout`, `sys.stderr`)
    pointed at /dev/null, to hide llama.cpp's chatter. That is process-wide: without a copy
    taken before, every line another thread logged meanwhile (the other models loading
    beside it, the server answering its first requests) was lost. A stream with no copy is
    returned as it is.
    """
    fd = _descriptor(stream)
    return stream if fd is None else _copies.get(fd, stream)


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's own logging set-up, with its handlers on copies (`own_copy`) of the
    interpreter's original stdout and stderr (`sys.__stdout__`, `sys.__stderr__`).

    `voicebot serve` configures uvicorn while the models load. Its default handlers take
    whatever `sys.stdout`/`sys.stderr` are then, and while llama-cpp-python loads a model
    those are /dev/null files: a server configured then had lost its request and WebSocket
    lines for good. On the original streams it still lost those logged during a load.
    """
    from uvicorn.config import LOGGING_CONFIG

    streams = {"ext://sys.stdout": sys.__stdout__, "ext://sys.stderr": sys.__stderr__}
    config = copy.deepcopy(LOGGING_CONFIG)
    for handler in config["handlers"].values():
        stream = streams.get(handler.get("stream", ""))
        if stream is not None:
            handler["stream"] = own_copy(stream)
    return config
