"""Logging set-up, done once at the edge (CLI): loguru, as Pipecat uses."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from loguru import logger

from voicebot.pipecat_compat import is_routine_warning

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
        if threshold > debug and record["level"].name == "WARNING":
            return not is_routine_warning(record["name"], record["message"])
        return True

    logger.add(
        sys.stderr,
        level=level,
        filter=keep,
        format="{time:HH:mm:ss.SSS} | {level: <7} | {name}:{line} - {message} {extra}",
    )
