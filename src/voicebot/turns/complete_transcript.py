"""End the user's turn as soon as the transcript reads as a finished sentence.

Smart-turn judges a pause by intonation alone; on voices it was not trained on it often
judges a finished question unfinished and the turn waits `turn.max_silence_secs` (2 s).
The transcript is ready ~0.2-0.6 s after the speech stops. When it is a complete
sentence or question (not ending on a word that needs a continuation, a comma or
"...") and smart-turn, or the LLM answering the words (turns/sentence_end.py), judged
the pause finished too, the turn ends at once; when only the transcript says so, it ends
`turn.complete_transcript_alone_after_secs` after the speech stopped; otherwise
smart-turn and the silence limit decide.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from pipecat.audio.turn.base_turn_analyzer import EndOfTurnState
from pipecat.frames.frames import (
    Frame,
    TranscriptionFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.turns.types import ProcessFrameResult
from pipecat.turns.user_stop.base_user_turn_stop_strategy import BaseUserTurnStopStrategy

from voicebot.turns.segments import NoWordsFrame, spoken_since
from voicebot.turns.sentence_end import SentenceEnds

# Words a finished utterance does not end on: articles, prepositions, conjunctions,
# possessives, auxiliaries and fillers. "for." is Whisper punctuating a pause.
_DANGLING = frozenset(
    """a an the my your our their his her its this that these those some any
    to for of in on at by with from about into onto over under than as like
    and or but so because if when while although though since unless until whether
    is are was were am be been being do does did have has had can could will would
    shall should may might must i i'm we you they he she it let's um uh er erm hmm well
    just very really also""".split()
)


# Words after which a sentence plainly goes on: articles, possessives, conjunctions, and
# prepositions that rarely end one ("on", "in", "up" often do: "Turn the lights on.").
_GOES_ON = frozenset(
    """a an the my your our their his her its and or but because if although unless
    whether to for of with from about into than""".split()
)


def plainly_goes_on(text: str) -> bool:
    """Whether `text` stops where a sentence cannot: after a comma or "...", or on a word
    such as "for" or "the" ("I need a gift for." is Whisper punctuating a pause)."""
    text = text.strip().rstrip("'\")]")
    if not text or text.endswith("?"):
        return False
    if text.endswith((",", "...", "…")):
        return True
    words = re.findall(r"[a-z0-9']+", text.lower())
    return bool(words) and words[-1] in _GOES_ON


def reads_complete(text: str, *, min_words: int = 2) -> bool:
    """Whether `text` reads as a finished utterance (a sentence or question).

    Whisper's final punctuation is not required: tiny.en leaves it off some finished
    sentences ("I'd like to book a table for 4 people"), and smart-turn judging such a
    turn unfinished then held it for `turn.max_silence_secs`. A pause in mid-sentence is
    kept from ending the turn by the floor (`turn.min_silence_secs`), with or without it.
    """
    text = text.strip()
    if text.endswith(("...", "…", ",", ";", ":", "-")):
        return False
    words = re.findall(r"[a-z0-9']+", text.lower())
    if len(words) < min_words:
        return False
    return text.rstrip("'\")]").endswith("?") or words[-1] not in _DANGLING


class IntonationVerdicts(Protocol):
    """Where smart-turn's judgement of each pause can be heard (audio/smart_turn.py)."""

    def add_verdict_listener(self, listener: VerdictListener) -> None: ...

    async def words_read(self, complete: bool | None) -> None:
        """Told what the words so far say (None: words spoken since are not in yet);
        smart-turn may judge a pause only when they do not read complete."""


VerdictListener = Callable[[EndOfTurnState], Awaitable[None]]


class CompleteTranscriptUserTurnStopStrategy(BaseUserTurnStopStrategy):
    """Ends the turn when the person is silent and what they said reads as complete.

    Every final transcript since the turn began is joined; the check runs when a
    transcript arrives while VAD hears silence, and only if no speech has started since
    (its words are not transcribed yet, so the text would be stale). Put it before
    smart-turn in the stop strategies; whichever decides first ends the turn.

    With `intonation` (smart-turn's verdicts) the transcript alone is not trusted at
    once: a sentence can read complete at a pause in its middle ("Can you remind me
    to call | my dentist tomorrow?"). When smart-turn also judged the pause finished,
    the turn ends as soon as both are known; when it judged it unfinished (or has not
    judged yet), the turn ends `alone_after_secs` after the speech stopped, unless the
    person speaks again first, or sooner when `sentence_ends` (the LLM's judgement of the
    words, which comes while the reply is answered speculatively) says they end a
    sentence. 0 trusts the transcript alone at once.

    A turn whose only speech Whisper could not make out (`NoWordsFrame.unclear`) ends
    when that is known: it gets a request to repeat, and nothing else would end it
    before Pipecat's stop watchdog.
    """

    def __init__(
        self,
        *,
        min_words: int = 2,
        intonation: IntonationVerdicts | None = None,
        alone_after_secs: float = 0.0,
        sentence_ends: SentenceEnds | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._min_words = min_words
        self._intonation = intonation
        self._sentence_ends = sentence_ends
        self._alone_after_s = alone_after_secs if intonation is not None else 0.0
        self._text: list[str] = []
        self._speaking = False
        # Speech has started since the last transcript: its text is still to come.
        self._untranscribed = False
        # smart-turn's verdict on the current pause (None: not judged yet).
        self._verdict: EndOfTurnState | None = None
        self._speech_stopped_at = 0.0
        self._wait: asyncio.Task[None] | None = None
        # Turns ended with smart-turn agreeing / on the transcript alone after the wait /
        # with the LLM judging that the words end a sentence.
        self.decided = 0
        self.decided_alone = 0
        self.decided_judged = 0
        # Turns of speech Whisper could not make out, ended when that was known.
        self.decided_unclear = 0
        if intonation is not None:
            intonation.add_verdict_listener(self._on_verdict)

    async def handle_user_turn_started(self) -> None:
        await self._clear()

    async def handle_user_turn_stopped(self) -> None:
        await self._clear()

    async def cleanup(self) -> None:
        await super().cleanup()
        await self._cancel_wait()

    async def process_frame(self, frame: Frame) -> ProcessFrameResult:
        if isinstance(frame, VADUserStartedSpeakingFrame):
            self._speaking = self._untranscribed = True
            self._verdict = None
            await self._cancel_wait()
        elif isinstance(frame, VADUserStoppedSpeakingFrame):
            self._speaking = False
            self._speech_stopped_at = frame.timestamp - frame.stop_secs
        elif isinstance(frame, TranscriptionFrame) and frame.text.strip():
            self._text.append(frame.text.strip())
            self._untranscribed = False
            if self._intonation is not None:
                # Words spoken after this segment are still to come (turns/segments.py).
                complete = None if spoken_since(frame) else self._text_reads_complete()
                await self._intonation.words_read(complete)
            await self._maybe_end()
        elif isinstance(frame, NoWordsFrame) and not frame.spoken_since:
            # The last speech gave no words: what was said before it is all there is.
            self._untranscribed = False
            if self._intonation is not None:
                # Without any words smart-turn's verdict cannot end the turn (Pipecat's
                # strategy waits for text), so it is not asked for.
                await self._intonation.words_read(
                    self._text_reads_complete() if self._text else None
                )
            if frame.unclear and not self._text and not self._speaking:
                # Speech Whisper could not make out, and nothing else said: the turn is
                # over and gets a request to repeat (processors/ask_to_repeat.py), not
                # Pipecat's stop watchdog 5 s after the speech.
                await self._cancel_wait()
                self.decided_unclear += 1
                await self.trigger_user_turn_stopped()
                return ProcessFrameResult.CONTINUE
            await self._maybe_end()
        return ProcessFrameResult.CONTINUE

    async def _on_verdict(self, state: EndOfTurnState) -> None:
        if self._speaking:
            return
        self._verdict = state
        await self._maybe_end()

    def _text_reads_complete(self) -> bool:
        return reads_complete(" ".join(self._text), min_words=self._min_words)

    def _reads_complete(self) -> bool:
        if self._speaking or self._untranscribed or not self._text:
            return False
        return self._text_reads_complete()

    async def _maybe_end(self) -> None:
        if not self._reads_complete():
            return
        if self._alone_after_s <= 0 or self._verdict == EndOfTurnState.COMPLETE:
            await self._cancel_wait()
            self.decided += 1
            await self.trigger_user_turn_stopped()
        elif self._wait is None:
            delay = self._speech_stopped_at + self._alone_after_s - time.time()
            self._wait = self.task_manager.create_task(
                self._end_after(max(delay, 0.0)), f"{self}::alone_after"
            )

    async def _end_after(self, delay: float) -> None:
        # The LLM's judgement of the words (turns/sentence_end.py) usually comes first.
        if self._sentence_ends is not None:
            judged = await self._sentence_ends.until_ends(lambda: " ".join(self._text), delay)
        else:
            judged = False
            await asyncio.sleep(delay)
        self._wait = None
        if self._reads_complete():
            if judged:
                self.decided_judged += 1
            else:
                self.decided_alone += 1
            await self.trigger_user_turn_stopped()

    async def _cancel_wait(self) -> None:
        if self._wait is not None:
            wait, self._wait = self._wait, None
            await self.task_manager.cancel_task(wait)

    async def _clear(self) -> None:
        self._text = []
        self._verdict = None
        await self._cancel_wait()
