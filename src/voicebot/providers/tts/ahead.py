"""Synthesise a held reply's first piece while its turn is still being confirmed.

With `turn.speculative` the LLM answers a pause's transcript while the end of the turn is
weighed (turns/speculative.py), and Pipecat's `SpeculationGate` holds the reply's frames
until the turn ends. The TTS hears nothing before that, so the first audio came one
synthesis (Piper: 0.12-0.23 s on 2 vCPU) after the turn ended. `FirstPieceAhead` reads
the held reply as the LLM writes it, cuts its first piece as the TTS will (the same
`FirstClauseTextAggregator`), and has the TTS synthesise that piece at once. When the
released reply's first piece reaches the TTS with the same text, its audio is ready; a
withdrawn reply's is dropped (`AheadAudio`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from voicebot.processors.text_clause import FirstClauseTextAggregator


@runtime_checkable
class SynthesisesAhead(Protocol):
    """A TTS that can start on a reply's first piece before the reply reaches it."""

    async def synthesise_ahead(self, text: str) -> None: ...


@dataclass
class AheadCounts:
    """First pieces synthesised ahead: `used` by the released reply, `dropped` otherwise
    (the reply was withdrawn, or its first piece reached the TTS with other words)."""

    started: int = 0
    used: int = 0
    dropped: int = 0


class FirstPieceAhead:
    """Between one session's LLM and TTS: the LLM hands it a held reply's text."""

    def __init__(self, tts: SynthesisesAhead, *, min_words: int) -> None:
        self._tts = tts
        self._min_words = min_words
        self.reply_started()

    def reply_started(self) -> None:
        self._aggregator = FirstClauseTextAggregator(min_words=self._min_words)
        self._cut = False

    @property
    def first_piece_cut(self) -> bool:
        """Whether the held reply's first piece has gone to the TTS: the rest can wait."""
        return self._cut

    async def held_text(self, text: str) -> None:
        """Text of a reply the gate holds; its first piece goes to the TTS once cut."""
        if self._cut:
            return
        async for piece in self._aggregator.aggregate(text):
            self._cut = True
            await self._tts.synthesise_ahead(piece.text)
            return


class AheadAudio:
    """One piece's audio, synthesised by a task; read once, in order, as it comes."""

    def __init__(self, text: str, task: asyncio.Task[None], chunks: asyncio.Queue[object]):
        self.text = text
        self.task = task
        self._chunks = chunks

    def matches(self, text: str) -> bool:
        return self.text == text.strip()

    async def stream(self) -> AsyncIterator[bytes]:
        while (item := await self._chunks.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, bytes)
            yield item

    @staticmethod
    async def fill(chunks: AsyncIterator[bytes], into: asyncio.Queue[object]) -> None:
        """Put each chunk of `chunks` in `into`, then its error if any, then None."""
        try:
            async for chunk in chunks:
                into.put_nowait(chunk)
        except Exception as e:  # handed to whoever reads the audio
            into.put_nowait(e)
        finally:
            into.put_nowait(None)
