"""Which speech a transcript covers, as far as the turn strategies need to know.

A segmented STT transcribes each stretch of speech after the VAD's stop. On a busy
machine the transcript of one stretch can arrive after the person has started the next
("Remind me what the weather | will be like on Friday": the words before the 700 ms
pause came after the VAD had heard the second half begin). Read as the turn's latest
words, such a transcript let the turn end before the second half was transcribed, and
the bot answered "Remind me what the winner." alone (2026-11-23, held-out run). Our STT
says so in the frame's `result`; the turn strategies then still wait for the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipecat.frames.frames import DataFrame, TranscriptionFrame


@dataclass(frozen=True)
class SegmentTranscript:
    """`TranscriptionFrame.result` of our segmented STT: whether the person started
    speaking again after this segment ended and before its transcript was ready."""

    spoken_since: bool


@dataclass
class NoWordsFrame(DataFrame):
    """Our segmented STT transcribed a segment and found no words in it (a cough, a word
    Whisper dropped). The turn strategies then know that segment's words are all in
    rather than wait for a transcript that will not come. `unclear`: it was speech whose
    words Whisper could not make out (`Transcript.unclear`)."""

    spoken_since: bool = False
    unclear: bool = False


def spoken_since(frame: TranscriptionFrame | NoWordsFrame) -> bool:
    """Whether speech began after the segment `frame` transcribes (False when unknown)."""
    if isinstance(frame, NoWordsFrame):
        return frame.spoken_since
    return isinstance(frame.result, SegmentTranscript) and frame.result.spoken_since
