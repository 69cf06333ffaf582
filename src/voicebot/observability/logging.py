"""Logging set-up, done once at the edge (CLI): loguru, as Pipecat uses."""

from __future__ import annotations

import sys

from loguru import logger


def setup_logging(level: str = "INFO") -> None:
    """Send logs to stderr at `level`, with each record's bound fields appended."""
    logger.remove()
    logger.add(
        sys.stderr,
        level=level,
        format="{time:HH:mm:ss.SSS} | {level: <7} | {name}:{line} - {message} {extra}",
    )
