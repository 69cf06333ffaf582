"""TTS text aggregation that lets a long first sentence start speaking at its first clause."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from pipecat.services.tts_service import TTSService
from pipecat.utils.text.base_text_aggregator import Aggregation, TextType
from pipecat.utils.text.simple_text_aggregator import SimpleTextAggregator

from voicebot.pipecat_compat import replace_text_aggregator

CLAUSE_BREAKS = ",;:\u2014"
# Words that open a new phrase: a long first sentence without a comma is cut before one.
PHRASE_OPENERS = frozenset(
    "because which who whose where while although though since unless whereas but".split()
)
# A period after one of these (or after a single letter, a digit) may not end a sentence.
ABBREVIATIONS = frozenset("mr mrs ms dr st jr sr prof vs etc inc ltd co no approx".split())


class FirstClauseTextAggregator(SimpleTextAggregator):
    """Pipecat's sentence aggregation, except for the first piece of each reply.

    The first audio waits for the first text handed to TTS. A reply that opens with a
    long sentence ("When it is raining, it's best to wear ...") would keep the user
    waiting for all of it, so the first piece is cut at the first clause break once it
    holds `min_words` words, or before a word that opens a new phrase ("The sky is blue
    | because ..."). A first sentence that plainly ends ("?", "!", "." after a word that
    is no abbreviation) goes at once, without waiting for the next token to confirm it.
    Later pieces are whole sentences, which sound better and are synthesised while the
    first one plays.
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
            if result is None and self._first_pending:
                result = await self._first_piece(char)
            if result and _speakable(result.text):
                self._first_pending = False
                yield result

    async def _first_piece(self, char: str) -> Aggregation | None:
        """The first piece, if `char` ends it early; what follows stays in the buffer."""
        rest = ""
        if self._at_clause_break(char) or self._at_plain_sentence_end(char):
            piece = self._text
        else:
            cut = self._phrase_opener_cut(char)
            if cut is None:
                return None
            piece, rest = self._text[:cut], self._text[cut:]
        await super().reset()
        self._text = rest
        return Aggregation(text=piece.strip(" "), type=TextType.SENTENCE)

    def _at_plain_sentence_end(self, char: str) -> bool:
        if char in "?!":
            return bool(self._text[:-1].strip())
        if char != ".":
            return False
        words = self._text[:-1].split()
        last = words[-1].lower() if words else ""
        # "3." may be "3.5", "J." an initial, "e.g" or "Dr" an abbreviation.
        return len(last) > 1 and last.isalpha() and last not in ABBREVIATIONS

    def _phrase_opener_cut(self, char: str) -> int | None:
        """Where to cut before the word just completed, if it opens a new phrase."""
        if not char.isspace() or not self._min_words:
            return None
        before, _, word = self._text[:-1].rstrip().rpartition(" ")
        if word.lower() not in PHRASE_OPENERS or len(before.split()) < self._min_words:
            return None
        return len(before) + 1

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
