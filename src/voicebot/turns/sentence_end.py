"""Whether the words of a pause end a sentence, as the LLM answering them reads them.

Whisper punctuates the end of every segment, so "Can you remind me to call." reads as
complete to a word list while the person is only pausing. The language model that
answers the words judges them better: given the words without Whisper's final
punctuation, the probability that its next token ends the sentence (".", "?", "!") was
0.08 or more after 27 of 30 finished requests and questions, and at most 0.022 after all
45 word sequences that go on ("Remind me to water", "How many people live"), with the
bundled SmolLM2 (`voicebot bench sentence-ends`: sentences written for this check, kept
apart from the benchmark's voice set).

The probability is read while the LLM answers a pause's transcript speculatively
(turns/speculative.py): the reply's prompt is read in one pass that keeps the next-token
probabilities at the last word as well as at the end, so the check costs no extra read
(providers/llm/llama_cpp.py). `SentenceEnds` carries the figure from the LLM's worker
thread to the session's turn strategies: a transcript that reads complete and is judged
to end a sentence ends the turn without waiting for smart-turn, at the shorter
`turn.sentence_end_secs` floor (0.8 s) instead of `turn.min_silence_secs` (0.9 s), or at
`turn.sure_sentence_end_secs` (0.6 s) when the probability reaches
`turn.sure_sentence_end_probability` (0.25, ten times the highest of those 45): see
README_PIPECAT.md, "Words the LLM judges finished".

Words that end on an object pronoun right after a preposition ("I need a gift for it.")
are never judged to end a sentence: transcribing a pause after "for", Whisper tiny.en
often adds such a word ("for it.", "for you."), and the words then read finished to the
LLM too. They keep `turn.min_silence_secs`.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable

# What Whisper may put after the last word: stripped before the words are judged.
TRAILING = " \t\n.?!,;:…'\")]"


def unpunctuated(text: str) -> str:
    """`text` without the punctuation and quotes after its last word."""
    return text.rstrip(TRAILING)


# Whisper tiny.en was seen adding "it" or "you" at a pause after "for" (tune half); the
# same ending after the other prepositions is treated alike. A question that really ends
# so ("Can you help me with it?") only waits the usual floor.
_PREPOSITIONS = frozenset("for to with about at on in of from by into onto without".split())
_PRONOUNS = frozenset("it you me us them him her".split())


def may_be_added_at_a_pause(text: str) -> bool:
    """Whether `text` ends on a word Whisper may have added at a pause: an object
    pronoun right after a preposition ("I need a gift for it.", "a table for you.")."""
    words = re.findall(r"[a-z']+", unpunctuated(text).lower())
    return len(words) >= 2 and words[-1] in _PRONOUNS and words[-2] in _PREPOSITIONS


def _key(text: str) -> str:
    return " ".join(unpunctuated(text).lower().split())


class SentenceEnds:
    """One session's latest judgement: the words and how likely they end a sentence.

    Used on the session's event loop: the LLM's worker thread hands its judgement over
    with `loop.call_soon_threadsafe(publish, ...)`, and waiters wake at once.
    """

    def __init__(self, threshold: float, sure_threshold: float | None = None) -> None:
        self.threshold = threshold
        # Words at or above it surely end a sentence (an even shorter floor); None: no
        # such tier.
        self.sure_threshold = None if sure_threshold is None else max(sure_threshold, threshold)
        self._key = ""
        self._probability: float | None = None
        # Set (and replaced) at every judgement: wakes whoever waits for one.
        self._next_judgement = asyncio.Event()
        # Judgements made, how many said the words end a sentence, and how many surely.
        self.judged = 0
        self.ended = 0
        self.surely_ended = 0

    def publish(self, text: str, probability: float) -> None:
        self._key, self._probability = _key(text), probability
        self.judged += 1
        self.ended += probability >= self.threshold
        self.surely_ended += self.sure_threshold is not None and probability >= self.sure_threshold
        made, self._next_judgement = self._next_judgement, asyncio.Event()
        made.set()

    def probability(self, text: str) -> float | None:
        """The probability for exactly these words, or None when they were not judged."""
        return self._probability if self._key == _key(text) else None

    def ends(self, text: str, *, surely: bool = False) -> bool:
        """Whether the LLM judged `text` to end a sentence, or with `surely` to surely
        end one (`sure_threshold`; False without that tier). False when not judged yet,
        and for words Whisper may have added at a pause (`may_be_added_at_a_pause`)."""
        threshold = self.sure_threshold if surely else self.threshold
        if threshold is None or may_be_added_at_a_pause(text):
            return False
        probability = self.probability(text)
        return probability is not None and probability >= threshold

    async def until_ends(self, words: Callable[[], str], timeout_s: float) -> bool:
        """Wait up to `timeout_s` for the LLM to judge that `words()` (read again at each
        judgement: more may have been said) end a sentence; whether it did."""
        deadline = time.monotonic() + timeout_s
        while not self.ends(words()):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._next_judgement.wait(), left)
        return True
