"""End the user's turn as soon as the transcript reads as a finished sentence.

Smart-turn judges a pause by intonation alone; on voices it was not trained on it often
judges a finished question unfinished and the turn waits `turn.max_silence_secs` (2 s).
The transcript is ready ~0.2-0.6 s after the speech stops. When it is a complete
sentence or question (Whisper's final punctuation, not ending on a word that needs a
continuation), the turn ends at once; otherwise smart-turn and the silence limit decide.
"""

from __future__ import annotations

import re
from typing import Any

from pipecat.frames.frames import (
    Frame,
    TranscriptionFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.turns.types import ProcessFrameResult
from pipecat.turns.user_stop.base_user_turn_stop_strategy import BaseUserTurnStopStrategy

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
_END = re.compile(r"[.?!]['\")\]]*$")


def reads_complete(text: str, *, min_words: int = 2) -> bool:
    """Whether `text` reads as a finished utterance (a sentence or question)."""
    text = text.strip()
    if not _END.search(text) or text.endswith(("...", "…")):
        return False
    words = re.findall(r"[a-z0-9']+", text.lower())
    if len(words) < min_words:
        return False
    return text.rstrip("'\")]").endswith("?") or words[-1] not in _DANGLING


class CompleteTranscriptUserTurnStopStrategy(BaseUserTurnStopStrategy):
    """Ends the turn when the person is silent and what they said reads as complete.

    Every final transcript since the turn began is joined; the check runs when a
    transcript arrives while VAD hears silence, and only if no speech has started since
    (its words are not transcribed yet, so the text would be stale). Put it before
    smart-turn in the stop strategies; whichever decides first ends the turn.
    """

    def __init__(self, *, min_words: int = 2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._min_words = min_words
        self._text: list[str] = []
        self._speaking = False
        # Speech has started since the last transcript: its text is still to come.
        self._untranscribed = False
        self.decided = 0

    async def handle_user_turn_started(self) -> None:
        self._text = []

    async def handle_user_turn_stopped(self) -> None:
        self._text = []

    async def process_frame(self, frame: Frame) -> ProcessFrameResult:
        if isinstance(frame, VADUserStartedSpeakingFrame):
            self._speaking = self._untranscribed = True
        elif isinstance(frame, VADUserStoppedSpeakingFrame):
            self._speaking = False
        elif isinstance(frame, TranscriptionFrame) and frame.text.strip():
            self._text.append(frame.text.strip())
            self._untranscribed = False
            await self._maybe_end()
        return ProcessFrameResult.CONTINUE

    async def _maybe_end(self) -> None:
        if self._speaking or self._untranscribed or not self._text:
            return
        if reads_complete(" ".join(self._text), min_words=self._min_words):
            self.decided += 1
            await self.trigger_user_turn_stopped()
