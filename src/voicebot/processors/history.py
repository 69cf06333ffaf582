"""Keeps the conversation sent to the LLM bounded: recent exchanges only, within a token budget."""

from __future__ import annotations

from typing import Any

from loguru import logger
from pipecat.frames.frames import Frame, LLMContextFrame
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

# Close enough for English with the tokenizers of small chat models.
CHARS_PER_TOKEN = 4


def _text(message: Any) -> str:
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def bounded(messages: list[Any], max_turns: int, max_tokens: int) -> list[Any]:
    """The most recent messages holding at most `max_turns` user turns and ~`max_tokens`.

    System messages stay; the latest user message always stays; older messages go first.
    """
    system = [m for m in messages if isinstance(m, dict) and m.get("role") == "system"]
    rest = [m for m in messages if not (isinstance(m, dict) and m.get("role") == "system")]
    users = [i for i, m in enumerate(rest) if isinstance(m, dict) and m.get("role") == "user"]
    if len(users) > max_turns:
        rest = rest[users[-max_turns] :]
    budget = max_tokens * CHARS_PER_TOKEN - sum(len(_text(m)) for m in system)
    while len(rest) > 1 and sum(len(_text(m)) for m in rest) > budget:
        rest = rest[1:]
        # Never start the history half-way through an exchange.
        while len(rest) > 1 and isinstance(rest[0], dict) and rest[0].get("role") != "user":
            rest = rest[1:]
    return system + rest


class HistoryLimiter(FrameProcessor):
    """Sits before the LLM and trims each context it is about to answer, in place, so a
    long session neither outgrows the model's window nor slows every turn down."""

    def __init__(self, *, max_turns: int, max_tokens: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._max_turns = max_turns
        self._max_tokens = max_tokens

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, LLMContextFrame):
            messages = list(frame.context.messages)
            kept = bounded(messages, self._max_turns, self._max_tokens)
            if len(kept) < len(messages):
                frame.context.set_messages(kept)
                logger.bind(dropped=len(messages) - len(kept)).debug("trimmed conversation history")
        await self.push_frame(frame, direction)
