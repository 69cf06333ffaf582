"""Ending the turn on meaning: a complete transcript ends it, an unfinished one waits."""

from __future__ import annotations

import pytest
from pipecat.frames.frames import (
    TranscriptionFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)

from voicebot.turns.complete_transcript import (
    CompleteTranscriptUserTurnStopStrategy,
    reads_complete,
)


@pytest.mark.parametrize(
    "text",
    [
        "What is the capital of France?",
        "How many days are there in a week?",
        "Tell me a joke, please!",
        "Turn off the lights.",
        "I'd like to book a table for four people.",
    ],
)
def test_finished_sentences_read_complete(text: str) -> None:
    assert reads_complete(text)


@pytest.mark.parametrize(
    "text",
    [
        "I'd like to book a table for",  # no final punctuation: Whisper heard it trail off
        "I'd like to book a table for.",  # a pause punctuated, but "for" needs more
        "So I was thinking...",
        "And the.",
        "Um.",  # one word: too little to act on
        "Yes",
        "",
    ],
)
def test_unfinished_ones_do_not(text: str) -> None:
    assert not reads_complete(text)


def _transcript(text: str) -> TranscriptionFrame:
    return TranscriptionFrame(text=text, user_id="user", timestamp="now")


async def _feed(strategy: CompleteTranscriptUserTurnStopStrategy, *frames: object) -> list[str]:
    ended: list[str] = []

    async def on_stopped(_strategy: object, *_args: object) -> None:
        ended.append("stopped")

    strategy.add_event_handler("on_user_turn_stopped", on_stopped)
    await strategy.handle_user_turn_started()
    for frame in frames:
        await strategy.process_frame(frame)  # type: ignore[arg-type]
    return ended


async def test_a_complete_question_after_silence_ends_the_turn() -> None:
    strategy = CompleteTranscriptUserTurnStopStrategy()
    ended = await _feed(
        strategy,
        VADUserStartedSpeakingFrame(),
        VADUserStoppedSpeakingFrame(),
        _transcript("What is the capital of France?"),
    )
    assert ended == ["stopped"] and strategy.decided == 1


async def test_a_pause_mid_sentence_leaves_the_decision_to_smart_turn() -> None:
    strategy = CompleteTranscriptUserTurnStopStrategy()
    ended = await _feed(
        strategy,
        VADUserStartedSpeakingFrame(),
        VADUserStoppedSpeakingFrame(),
        _transcript("I'd like to book a table for"),
    )
    assert ended == []


async def test_speech_after_a_complete_transcript_waits_for_its_words() -> None:
    """ "Book a table. [pause] For four." : the second part is not cut off."""
    strategy = CompleteTranscriptUserTurnStopStrategy()
    ended = await _feed(
        strategy,
        VADUserStartedSpeakingFrame(),
        VADUserStoppedSpeakingFrame(),
        VADUserStartedSpeakingFrame(),  # speaking again before the transcript came
        _transcript("Book a table."),
        VADUserStoppedSpeakingFrame(),  # stale text: no decision at the silence
    )
    assert ended == []
    await strategy.process_frame(_transcript("For four people."))
    assert ended == ["stopped"]
