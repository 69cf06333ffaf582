"""Ending the turn on meaning: a complete transcript ends it, an unfinished one waits."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
from pipecat.audio.turn.base_turn_analyzer import EndOfTurnState
from pipecat.clocks.system_clock import SystemClock
from pipecat.frames.frames import (
    Frame,
    TranscriptionFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.processors.frame_processor import FrameProcessorSetup
from pipecat.utils.asyncio.task_manager import TaskManager

from voicebot.turns.complete_transcript import (
    CompleteTranscriptUserTurnStopStrategy,
    VerdictListener,
    plainly_goes_on,
    reads_complete,
)
from voicebot.turns.segments import NoWordsFrame, SegmentTranscript
from voicebot.turns.sentence_end import SentenceEnds, may_be_added_at_a_pause


@pytest.mark.parametrize(
    "text",
    [
        "What is the capital of France?",
        "How many days are there in a week?",
        "Tell me a joke, please!",
        "Turn off the lights.",
        "I'd like to book a table for four people.",
        # Whisper left the period off a finished sentence (tune half, espeak RP voice).
        "I'd like to muck a table for 4 people",
    ],
)
def test_finished_sentences_read_complete(text: str) -> None:
    assert reads_complete(text)


@pytest.mark.parametrize(
    "text",
    [
        "I'd like to book a table for",  # Whisper heard it trail off on a word that needs more
        "Tell me something funny,",
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


@pytest.mark.parametrize(
    ("text", "goes_on"),
    [
        ("I need a gift for.", True),
        ("Tell me something funny,", True),
        ("I'd like to book a table for the", True),
        ("So I was thinking...", True),
        ("Turn the lights on.", False),  # "on" often ends a sentence
        ("Who is it for?", False),  # a question ends where it ends
        ("Can you remind me to call.", False),  # reads complete: only time tells
        ("", False),
    ],
)
def test_words_that_plainly_go_on(text: str, goes_on: bool) -> None:
    assert plainly_goes_on(text) == goes_on


@pytest.mark.parametrize(
    ("text", "added"),
    [
        ("I need a gift for it.", True),  # Whisper at a pause after "for" (tune half)
        ("I'd like to book a table for you.", True),
        ("Can you help me with them?", True),  # a real one keeps the usual floor
        ("How many days are there in a week?", False),
        ("Tell me about it now.", False),
        ("I love it.", False),  # no preposition before the pronoun
        ("You.", False),
        ("", False),
    ],
)
def test_words_whisper_may_add_at_a_pause(text: str, added: bool) -> None:
    assert may_be_added_at_a_pause(text) == added


def test_the_llm_judging_words_that_may_be_added_at_a_pause_does_not_count() -> None:
    """ "I need a gift for it." reads finished to the LLM; the "it" may be Whisper's."""
    ends = SentenceEnds(threshold=0.08)
    ends.publish("I need a gift for it.", 0.7)
    assert ends.probability("I need a gift for it.") == 0.7 and not ends.ends(
        "I need a gift for it."
    )
    ends.publish("I need a gift.", 0.7)
    assert ends.ends("I need a gift.")


def test_words_surely_end_a_sentence_only_at_the_sure_threshold() -> None:
    """Two tiers: at `threshold` the words end a sentence, at `sure_threshold` surely;
    without that tier nothing is sure, and a sure threshold below the other is raised."""
    ends = SentenceEnds(threshold=0.08, sure_threshold=0.25)
    ends.publish("Please call my mother.", 0.1)
    assert ends.ends("Please call my mother.")
    assert not ends.ends("Please call my mother.", surely=True)
    ends.publish("Where is the bakery?", 0.6)
    assert ends.ends("Where is the bakery?", surely=True)
    ends.publish("I need a gift for it.", 0.9)
    assert not ends.ends("I need a gift for it.", surely=True)
    assert (ends.judged, ends.ended, ends.surely_ended) == (3, 3, 2)
    plain = SentenceEnds(threshold=0.08)
    plain.publish("Where is the bakery?", 0.6)
    assert plain.ends("Where is the bakery?") and not plain.ends(
        "Where is the bakery?", surely=True
    )
    assert SentenceEnds(threshold=0.3, sure_threshold=0.1).sure_threshold == 0.3


def _transcript(text: str) -> TranscriptionFrame:
    return TranscriptionFrame(text=text, user_id="user", timestamp="now")


def _spoken_then_transcribed(text: str, stop_secs: float = 0.0) -> list[Frame]:
    """Speech, the VAD's stop (`stop_secs` of silence after it), then its transcript."""
    return [
        VADUserStartedSpeakingFrame(),
        VADUserStoppedSpeakingFrame(stop_secs=stop_secs),
        _transcript(text),
    ]


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


class _Intonation:
    """smart-turn's verdicts, given by the test."""

    def __init__(self) -> None:
        self.listeners: list[VerdictListener] = []
        self.words: list[bool | None] = []

    def add_verdict_listener(self, listener: VerdictListener) -> None:
        self.listeners.append(listener)

    async def words_read(self, complete: bool | None) -> None:
        self.words.append(complete)

    async def judge(self, state: EndOfTurnState) -> None:
        for listener in self.listeners:
            await listener(state)


async def _with_intonation(
    alone_after_secs: float = 0.3, sentence_ends: SentenceEnds | None = None
) -> tuple[CompleteTranscriptUserTurnStopStrategy, _Intonation]:
    intonation = _Intonation()
    strategy = CompleteTranscriptUserTurnStopStrategy(
        intonation=intonation, alone_after_secs=alone_after_secs, sentence_ends=sentence_ends
    )
    tasks = TaskManager(loop=asyncio.get_running_loop())
    await strategy.setup(
        FrameProcessorSetup(
            clock=SystemClock(), task_manager=tasks, pipeline_worker=cast(Any, None)
        )
    )
    return strategy, intonation


async def test_a_complete_transcript_smart_turn_agrees_with_ends_the_turn_at_once() -> None:
    strategy, intonation = await _with_intonation()
    ended = await _feed(strategy, VADUserStartedSpeakingFrame(), VADUserStoppedSpeakingFrame())
    await intonation.judge(EndOfTurnState.COMPLETE)
    assert ended == []  # no words yet
    await strategy.process_frame(_transcript("What is the capital of France?"))
    assert ended == ["stopped"] and strategy.decided == 1
    assert intonation.words == [True], "smart-turn was not told what the words say"


async def test_smart_turn_agreeing_after_the_transcript_ends_the_turn_then() -> None:
    strategy, intonation = await _with_intonation(alone_after_secs=30)
    ended = await _feed(strategy, *_spoken_then_transcribed("Turn off the lights."))
    assert ended == []
    await intonation.judge(EndOfTurnState.COMPLETE)
    assert ended == ["stopped"]


async def test_a_complete_transcript_alone_waits_and_then_ends_the_turn() -> None:
    """smart-turn judged the pause unfinished: the transcript is trusted after the wait."""
    strategy, intonation = await _with_intonation(alone_after_secs=0.3)
    ended = await _feed(
        strategy, *_spoken_then_transcribed("Can you remind me to call.", stop_secs=0.2)
    )
    await intonation.judge(EndOfTurnState.INCOMPLETE)
    assert ended == []
    await asyncio.sleep(0.5)  # 0.3 s after the speech stopped (0.2 s before the VAD's stop)
    assert ended == ["stopped"] and strategy.decided_alone == 1 and strategy.decided == 0


async def test_the_llm_judging_the_words_finished_ends_the_wait_at_once() -> None:
    """No verdict from smart-turn (it is not asked about words that read complete): the
    LLM answering the words judges them; a judgement on other words does not count."""
    ends = SentenceEnds(threshold=0.08)
    strategy, _ = await _with_intonation(alone_after_secs=30, sentence_ends=ends)
    ended = await _feed(strategy, *_spoken_then_transcribed("Where is the bakery?"))
    await asyncio.sleep(0.05)
    ends.publish("Where is the bakery? Near the park.", 0.9)
    await asyncio.sleep(0.05)
    assert ended == []
    ends.publish("Where is the bakery?", 0.02)  # below the threshold: waits on
    await asyncio.sleep(0.05)
    assert ended == []
    ends.publish("where is the bakery", 0.4)  # Whisper's case and punctuation ignored
    await asyncio.sleep(0.05)
    assert ended == ["stopped"] and strategy.decided_judged == 1
    assert strategy.decided_alone == strategy.decided == 0


async def test_speech_during_the_wait_keeps_the_turn_open() -> None:
    """ "Can you remind me to call [pause] my dentist tomorrow?" is not cut off."""
    strategy, intonation = await _with_intonation(alone_after_secs=0.2)
    ended = await _feed(strategy, *_spoken_then_transcribed("Can you remind me to call."))
    await intonation.judge(EndOfTurnState.INCOMPLETE)
    await strategy.process_frame(VADUserStartedSpeakingFrame())
    await asyncio.sleep(0.4)
    assert ended == []
    # The stale verdict of the first pause does not count for the second.
    await strategy.process_frame(VADUserStoppedSpeakingFrame(stop_secs=0.0))
    await strategy.process_frame(_transcript("My dentist tomorrow?"))
    assert ended == []
    await intonation.judge(EndOfTurnState.COMPLETE)
    assert ended == ["stopped"]


async def test_without_a_wait_the_transcript_alone_ends_the_turn_at_once() -> None:
    strategy, _ = await _with_intonation(alone_after_secs=0)
    ended = await _feed(strategy, *_spoken_then_transcribed("Turn off the lights."))
    assert ended == ["stopped"]


async def test_smart_turn_is_told_what_each_transcript_says() -> None:
    """Unfinished words, then words that read complete, then words of a segment whose
    speech went on (more to come): smart-turn judges the pause only for the first."""
    strategy, intonation = await _with_intonation(alone_after_secs=30)
    await _feed(strategy, *_spoken_then_transcribed("I'd like a table for"))
    await strategy.process_frame(_transcript("four people."))
    late = TranscriptionFrame(
        text="Remind me what the weather",
        user_id="user",
        timestamp="now",
        result=SegmentTranscript(spoken_since=True),
    )
    await strategy.process_frame(late)
    assert intonation.words == [False, True, None]


async def test_a_last_segment_without_words_leaves_the_words_before_it() -> None:
    """ "Book a table. [a cough]": Whisper finds no words in the cough; the turn ends on
    the words before it instead of waiting for a transcript that will not come."""
    strategy = CompleteTranscriptUserTurnStopStrategy()
    ended = await _feed(
        strategy,
        VADUserStartedSpeakingFrame(),
        VADUserStoppedSpeakingFrame(),
        VADUserStartedSpeakingFrame(),  # the cough, before the first transcript came
        _transcript("Book a table."),
        VADUserStoppedSpeakingFrame(),
    )
    assert ended == []
    await strategy.process_frame(NoWordsFrame(spoken_since=True))  # not the last speech
    assert ended == []
    await strategy.process_frame(NoWordsFrame())
    assert ended == ["stopped"]


async def test_speech_whisper_could_not_make_out_ends_a_turn_without_words() -> None:
    """Nothing else was said: the turn is over (and gets a request to repeat) when Whisper
    says so. A cough (no words, not unclear) leaves the turn to Pipecat's watchdog, and
    unclear speech after words leaves it to those words."""
    for frames, ended in [
        ([NoWordsFrame(unclear=True)], ["stopped"]),
        ([NoWordsFrame()], []),
        ([_transcript("I'd like a table for"), NoWordsFrame(unclear=True)], []),
    ]:
        strategy = CompleteTranscriptUserTurnStopStrategy()
        stops = await _feed(
            strategy, VADUserStartedSpeakingFrame(), VADUserStoppedSpeakingFrame(), *frames
        )
        assert stops == ended, frames
        assert strategy.decided_unclear == len(ended)
