"""A reply the LLM stopped at `llm.max_tokens` ends on its last finished sentence.

A small model often writes past the limit (80 tokens by default): 4 of 12 replies of the
bundled SmolLM2 did in one held-out bench run, and the TTS spoke them to the last word
written ("I'm here to help, not"). The LLM service pushes a `ReplyStoppedAtLimitFrame`
just before such a reply's `LLMFullResponseEndFrame`. The TTS holds a reply's text until a
sentence ends, so what it holds then is the unfinished sentence: it drops it instead of
speaking it, when an earlier part of the reply was handed over to be spoken. A reply that
is one unfinished sentence is spoken as it is (better than silence). Pipecat's assistant
aggregator writes the words the TTS spoke to the context, so the next turn does not build
on the fragment either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from loguru import logger
from pipecat.frames.frames import DataFrame, Frame
from pipecat.services.tts_service import TTSService
from pipecat.utils.string import SENTENCE_ENDING_PUNCTUATION

from voicebot.pipecat_compat import text_aggregator

# What may follow a sentence's final punctuation.
_CLOSERS = " \t\n'\")]*_"


@dataclass
class ReplyStoppedAtLimitFrame(DataFrame):
    """The reply now ending stopped at the LLM's token limit; `text` is all it wrote."""

    text: str = ""


def ends_mid_sentence(text: str) -> bool:
    """Whether `text` stops without a sentence's final punctuation."""
    last = text.rstrip(_CLOSERS)[-1:]
    return bool(last) and last not in SENTENCE_ENDING_PUNCTUATION


def unfinished_after_spoken_words(reply: str, held: str) -> bool:
    """Whether `held`, the text the TTS still holds as `reply` ends, is an unfinished
    sentence that follows words of the reply already handed over to be spoken."""
    held = held.strip()
    if not ends_mid_sentence(held):
        return False
    reply = reply.rstrip()
    if not reply.endswith(held):
        return False  # not the reply's tail: the TTS may have changed the text
    return any(c.isalnum() for c in reply[: -len(held)])


def drop_unfinished_sentence(tts: TTSService) -> None:
    """Have `tts` drop the unfinished sentence of a reply stopped at the token limit.

    Pipecat calls the handler in `tts`'s own frame order, after the reply's last text and
    before its end flushes the held text to synthesis.
    """

    async def on_before_process_frame(service: TTSService, frame: Frame, *_: Any) -> None:
        if not isinstance(frame, ReplyStoppedAtLimitFrame):
            return
        aggregator = text_aggregator(service)
        held = aggregator.text.text
        if unfinished_after_spoken_words(frame.text, held):
            await aggregator.reset()
            logger.bind(dropped=held).debug("dropped the unfinished sentence of a cut reply")

    tts.add_event_handler("on_before_process_frame", on_before_process_frame)
