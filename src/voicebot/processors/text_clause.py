"""TTS text aggregation that lets a long first sentence start speaking at its first clause."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from pipecat.services.tts_service import TTSService
from pipecat.utils.text.base_text_aggregator import Aggregation, TextType
from pipecat.utils.text.simple_text_aggregator import SimpleTextAggregator

from voicebot.pipecat_compat import replace_text_aggregator

CLAUSE_BREAKS = ",;:\u2014"


class FirstClauseTextAggregator(SimpleTextAggregator):
    """Pipecat's sentence aggregation, except for the first piece of each reply.

    The first audio waits for the first text handed to TTS. A reply that opens with a
    long sentence ("When it is raining, it's best to wear ...") would keep the user
    waiting for all of it, so the first piece is cut at the first clause break once it
    holds `min_words` words. Later pieces are whole sentences, which sound better and
    are synthesised while the first one plays.
    """

    def __init__(self, *, min_words: int = 4, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._min_words = min_words
        self._first_pending = True

    async def aggregate(self, text: str) -> AsyncIterator[Aggregation]:
        if self._aggregation_type == TextType.TOKEN:
            async for piece in super().aggregate(text):
                yield piece
            return
        for char in text:
            self._text += char
            result = await self._check_sentence_with_lookahead(char)
            if result is None and self._first_pending and self._at_clause_break(char):
                result = Aggregation(text=self._text.strip(" "), type=TextType.SENTENCE)
                await super().reset()
            if result and _speakable(result.text):
                self._first_pending = False
                yield result

    def _at_clause_break(self, char: str) -> bool:
        if char not in CLAUSE_BREAKS or not self._min_words:
            return False
        before = self._text[:-1].rstrip()
        # "1,000" is a number, not a clause.
        if char == "," and before[-1:].isdigit():
            return False
        return len(before.split()) >= self._min_words

    async def flush(self) -> Aggregation | None:
        self._first_pending = True
        rest = await super().flush()
        return rest if rest is not None and _speakable(rest.text) else None

    async def handle_interruption(self) -> None:
        self._first_pending = True
        await super().handle_interruption()

    async def reset(self) -> None:
        self._first_pending = True
        await super().reset()


def _speakable(text: str) -> bool:
    """Text with something to say: a lone quote or "**" gives a silent TTS context, which
    Pipecat reports as an error."""
    return any(c.isalnum() for c in text)


def speak_first_clause_early(service: TTSService, min_words: int) -> None:
    """Give `service` a FirstClauseTextAggregator (Pipecat 1.14 builds its own in __init__)."""
    replace_text_aggregator(
        service,
        lambda current: FirstClauseTextAggregator(
            min_words=min_words,
            aggregation_type=current.aggregation_type,
            language=current.language,
        ),
    )
