"""Speculative replies: answered while the turn's end is weighed, spoken only once confirmed.

Fast tests: Pipecat's real user aggregator, LLM base (with its SpeculationGate), TTS base
and assistant aggregator; only the models are fakes, and a detector the test decides
with. The last test runs the real models through /ws.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from loguru import logger
from pipecat.frames.frames import (
    DataFrame,
    Frame,
    SystemFrame,
    TranscriptionFrame,
    TTSTextFrame,
    UserStoppedSpeakingFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import (
    LLMContextAggregatorPair,
    LLMUserAggregatorParams,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.tts_service import TTSService
from pipecat.tests.utils import SleepFrame, run_test
from pipecat.turns.types import ProcessFrameResult
from pipecat.turns.user_stop.base_user_turn_stop_strategy import BaseUserTurnStopStrategy
from pipecat.turns.user_turn_strategies import UserTurnStrategies

from tests.fakes import FakeLLMService, FakeTTSService, RecordingPiperVoice, WordsLocalLLM
from tests.helpers import words
from voicebot.config import Settings
from voicebot.models import SharedModels
from voicebot.pipeline import judge_sentence_ends
from voicebot.processors.text_clause import speak_first_clause_early
from voicebot.providers.llm import local
from voicebot.providers.tts.ahead import AheadCounts, FirstPieceAhead
from voicebot.providers.tts.piper import PiperTTSService
from voicebot.tools import voice_set
from voicebot.tools.client import load_pcm16k, run_turn
from voicebot.tools.local_server import LocalServer
from voicebot.turns import speculative
from voicebot.turns.complete_transcript import CompleteTranscriptUserTurnStopStrategy
from voicebot.turns.segments import NoWordsFrame, SegmentTranscript
from voicebot.turns.sentence_end import SentenceEnds
from voicebot.turns.speculative import SpeculativeUserTurnStopStrategy

REPLY = "Sure, a table for two at seven."


@dataclass
class EndTurn(DataFrame):
    """Stands for smart-turn or the silence limit deciding the pause ended the turn."""


class DecidesOnCue(BaseUserTurnStopStrategy):
    async def process_frame(self, frame: Frame) -> ProcessFrameResult:
        if isinstance(frame, EndTurn):
            await self.trigger_user_turn_stopped()
        return ProcessFrameResult.CONTINUE


@dataclass
class Probe(SystemFrame):
    """Where the test looks at the conversation before the session ends (ending it
    writes an open turn to the context)."""


@dataclass
class CatchUp(SystemFrame):
    """The session's VAD catches up: from here it has judged `seconds` of the pause silent."""

    heard_s: list[float] = field(default_factory=list)
    seconds: float = 0.0
    # Told that the chunk was counted, as `SilenceOnset.watch` tells its watchers.
    watchers: list[Callable[[], None]] = field(default_factory=list)


@dataclass
class AskModel(SystemFrame):
    """Another session's reply asks for the in-process model the held reply is using."""


@dataclass
class Snapshot:
    llm_calls: int
    messages: list[tuple[Any, Any]]
    spoken: str
    # Words each call of a `WordsLocalLLM` had written.
    written: list[int] = field(default_factory=list)


class Heard(FrameProcessor):
    """What reaches the transport (the words the bot speaks), plus a Probe's snapshot."""

    def __init__(self, llm: Any, context: LLMContext) -> None:
        super().__init__()
        self.frames: list[Frame] = []
        self.snapshot: Snapshot | None = None
        self.other_reply: asyncio.Task[float] | None = None
        self._llm = llm
        self._context = context

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, CatchUp):
            frame.heard_s[0] = frame.seconds
            for watcher in frame.watchers:
                watcher()
        if isinstance(frame, Probe):
            self.snapshot = Snapshot(
                self._llm.calls,
                _messages(self._context),
                _spoken(self.frames),
                list(getattr(self._llm, "written", [])),
            )
        if isinstance(frame, AskModel):
            self.other_reply = asyncio.create_task(self._llm._queue.run(lambda: None))
        self.frames.append(frame)
        await self.push_frame(frame, direction)


def _said(text: str) -> TranscriptionFrame:
    return TranscriptionFrame(text=text, user_id="user", timestamp="now")


async def _converse(
    frames: list[Frame],
    *,
    speculative: bool = True,
    word_delay_s: float = 0.02,
    min_silence_secs: float = 0.0,
    goes_on_secs: float = 0.0,
    hearing_voice: Callable[[], bool] | None = None,
    silence_heard: Callable[[], float] | None = None,
    watch_audio: Callable[[Callable[[], None]], None] | None = None,
    vad_lag_limit_secs: float = 5.0,
    sentence_ends: SentenceEnds | None = None,
    sentence_end_secs: float = 0.0,
    sure_sentence_end_secs: float | None = None,
    llm: Any = None,
    tts: TTSService | None = None,
) -> tuple[Heard, Any, LLMContext, SpeculativeUserTurnStopStrategy]:
    """`llm` (with a `calls` count) and `tts` replace the fakes when given."""
    llm = llm or FakeLLMService(reply=REPLY, word_delay_s=word_delay_s)
    detectors = [CompleteTranscriptUserTurnStopStrategy(), DecidesOnCue()]
    strategy = SpeculativeUserTurnStopStrategy(
        detectors=detectors,
        min_silence_secs=min_silence_secs,
        goes_on_secs=goes_on_secs,
        hearing_voice=hearing_voice,
        silence_heard=silence_heard,
        watch_audio=watch_audio,
        vad_lag_limit_secs=vad_lag_limit_secs,
        sentence_ends=sentence_ends,
        sentence_end_secs=sentence_end_secs,
        sure_sentence_end_secs=sure_sentence_end_secs,
    )
    context = LLMContext()
    pair = LLMContextAggregatorPair(
        context,
        user_params=LLMUserAggregatorParams(
            empty_user_turn=None,
            user_turn_strategies=UserTurnStrategies(
                stop=[strategy] if speculative else list(detectors)
            ),
        ),
    )
    heard = Heard(llm, context)
    pipeline = Pipeline([pair.user(), llm, tts or FakeTTSService(), heard, pair.assistant()])
    await run_test(pipeline, frames_to_send=frames)
    return heard, llm, context, strategy


def _spoken(frames: list[Frame]) -> str:
    return " ".join(f.text.strip() for f in frames if isinstance(f, TTSTextFrame)).strip()


def _messages(context: LLMContext) -> list[tuple[Any, Any]]:
    return [(m.get("role"), m.get("content")) for m in context.messages if isinstance(m, dict)]


async def test_a_confirmed_turn_speaks_the_held_reply_once() -> None:
    heard, llm, context, strategy = await _converse(
        [
            VADUserStartedSpeakingFrame(),
            VADUserStoppedSpeakingFrame(),
            _said("I'd like a table for two at"),  # reads unfinished: speculate
            SleepFrame(sleep=0.5),  # the reply is generated and held meanwhile
            Probe(),
            SleepFrame(sleep=0.1),
            EndTurn(),
            SleepFrame(sleep=0.5),
        ]
    )
    assert heard.snapshot is not None
    assert llm.finished == 1 and heard.snapshot.spoken == "", "spoken before it was confirmed"
    assert heard.snapshot.messages == [], "an unconfirmed turn reached the context"
    assert strategy.speculated == 1 and strategy.confirmed == 1 and strategy.withdrawn == 0
    assert llm.calls == 1, "the confirmed turn ran the LLM a second time"
    assert llm.contexts[0][-1]["content"] == "I'd like a table for two at"
    assert _spoken(heard.frames).split() == REPLY.split()
    assert _messages(context) == [
        ("user", "I'd like a table for two at"),
        ("assistant", REPLY),
    ]


async def test_when_the_person_goes_on_the_reply_is_dropped_and_never_in_history() -> None:
    heard, llm, context, strategy = await _converse(
        [
            VADUserStartedSpeakingFrame(),
            VADUserStoppedSpeakingFrame(),
            _said("I'd like a table for"),
            SleepFrame(sleep=0.05),  # a word or two generated, then more speech
            VADUserStartedSpeakingFrame(),
            SleepFrame(sleep=0.3),
            VADUserStoppedSpeakingFrame(),
            _said("two people at seven."),  # reads complete: the turn ends on it
            SleepFrame(sleep=0.6),
        ],
        word_delay_s=0.05,
    )
    assert strategy.speculated == 1 and strategy.withdrawn == 1 and strategy.confirmed == 0
    assert llm.calls == 2
    assert llm.finished == 1, "the dropped generation was not cancelled"
    assert llm.contexts[1][-1]["content"] == "I'd like a table for two people at seven."
    assert _spoken(heard.frames).split() == REPLY.split(), "a dropped word was spoken"
    assert _messages(context) == [
        ("user", "I'd like a table for two people at seven."),
        ("assistant", REPLY),
    ]


async def test_speech_that_gives_no_words_leaves_the_turn_to_the_words_before_it() -> None:
    """A cough after the words: the held reply is withdrawn at the cough and given again
    when Whisper finds no words in it, not after the VAD lag limit (5 s here)."""
    heard, llm, _, strategy = await _converse(
        [
            VADUserStartedSpeakingFrame(),
            VADUserStoppedSpeakingFrame(),
            _said("I'd like a table for two at"),
            SleepFrame(sleep=0.05),
            VADUserStartedSpeakingFrame(),  # a cough
            VADUserStoppedSpeakingFrame(),
            NoWordsFrame(),
            SleepFrame(sleep=0.05),
            EndTurn(),
            SleepFrame(sleep=0.8),
            Probe(),
        ]
    )
    assert strategy.speculated == 2 and strategy.withdrawn == 1 and strategy.confirmed == 1
    assert llm.contexts[-1][-1]["content"] == "I'd like a table for two at"
    assert heard.snapshot is not None and heard.snapshot.spoken.split() == REPLY.split()


async def test_speech_whisper_could_not_make_out_ends_the_turn_at_the_floor_unanswered() -> None:
    """No words to answer: nothing is generated, and the turn ends at `min_silence_secs`
    (its request to repeat follows: processors/ask_to_repeat.py), not at Pipecat's stop
    watchdog 5 s after the speech."""
    heard, llm, context, strategy = await _converse(
        [
            VADUserStartedSpeakingFrame(),
            VADUserStoppedSpeakingFrame(stop_secs=0.0),
            NoWordsFrame(unclear=True),
            SleepFrame(sleep=0.2),  # inside the floor
            Probe(),
            SleepFrame(sleep=1.5),
        ],
        min_silence_secs=0.8,
    )
    kinds = [type(f) for f in heard.frames]
    assert UserStoppedSpeakingFrame in kinds, "the turn did not end before the session"
    assert kinds.index(Probe) < kinds.index(UserStoppedSpeakingFrame), "ended before the floor"
    assert strategy.held == 1 and strategy.speculated == 0 and llm.calls == 0
    assert _messages(context) == []


async def test_a_turn_that_ends_too_soon_waits_for_the_silence_and_is_answered_ahead() -> None:
    """A complete transcript 0.1 s after the speech: the turn ends at `min_silence_secs`
    (0.8 s), with the reply generated meanwhile and spoken then, once."""
    heard, llm, context, strategy = await _converse(
        [
            VADUserStartedSpeakingFrame(),
            VADUserStoppedSpeakingFrame(stop_secs=0.0),
            _said("What time does the museum open?"),
            SleepFrame(sleep=0.5),  # inside the floor: generated, held
            Probe(),
            SleepFrame(sleep=0.8),
        ],
        min_silence_secs=0.8,
    )
    assert heard.snapshot is not None
    assert llm.finished == 1 and heard.snapshot.spoken == "", "spoken before the floor"
    assert heard.snapshot.messages == []
    assert strategy.held == 1 and strategy.speculated == 1 and strategy.confirmed == 1
    assert llm.calls == 1, "the held turn ran the LLM a second time"
    assert _spoken(heard.frames).split() == REPLY.split()
    assert _messages(context) == [("user", "What time does the museum open?"), ("assistant", REPLY)]


async def test_speech_within_the_floor_keeps_the_turn_open() -> None:
    """ "Can you remind me to call. | My dentist tomorrow?": read complete at the pause,
    but the person went on within `min_silence_secs`: one turn, one reply."""
    heard, llm, context, strategy = await _converse(
        [
            VADUserStartedSpeakingFrame(),
            VADUserStoppedSpeakingFrame(stop_secs=0.0),
            _said("Can you remind me to call."),
            SleepFrame(sleep=0.3),
            VADUserStartedSpeakingFrame(),
            SleepFrame(sleep=0.9),  # past where the floor would have ended the first part
            VADUserStoppedSpeakingFrame(stop_secs=0.0),
            _said("My dentist tomorrow?"),
            SleepFrame(sleep=1.2),
        ],
        min_silence_secs=0.6,
    )
    # The first decision was held and dropped; the second one (its VAD stop was built
    # with the other frames, so its silence looks long already) ends the turn.
    assert strategy.held >= 1 and strategy.withdrawn == 1
    assert llm.calls == 2
    assert _spoken(heard.frames).split() == REPLY.split()
    assert _messages(context) == [
        ("user", "Can you remind me to call. My dentist tomorrow?"),
        ("assistant", REPLY),
    ]


async def test_words_that_plainly_go_on_wait_longer_than_the_floor() -> None:
    """smart-turn (the cue) ends the turn at "I need a gift for." 0.1 s after the speech:
    held to `goes_on_secs` (1.2 s), not the floor (0.2 s); answered ahead meanwhile."""
    heard, llm, context, strategy = await _converse(
        [
            VADUserStartedSpeakingFrame(),
            VADUserStoppedSpeakingFrame(stop_secs=0.0),
            _said("I need a gift for."),
            EndTurn(),
            SleepFrame(sleep=0.6),  # past the floor
            Probe(),
            SleepFrame(sleep=1.5),
        ],
        min_silence_secs=0.2,
        goes_on_secs=1.2,
    )
    assert heard.snapshot is not None
    assert heard.snapshot.spoken == "" and heard.snapshot.messages == [], "ended at the floor"
    assert strategy.held == 1 and strategy.confirmed == 1 and llm.calls == 1
    assert _messages(context) == [("user", "I need a gift for."), ("assistant", REPLY)]


class JudgingLocalLLM(WordsLocalLLM):
    """Judges how likely the words end a sentence as a model would (here: by a table)."""

    judges_sentence_ends = True

    def __init__(self, probabilities: dict[str, float]) -> None:
        super().__init__(reply=REPLY)
        self.probabilities = probabilities
        self.judged: list[str] = []

    def _sentence_end_probability(self, messages: list[dict[str, Any]]) -> float | None:
        self.judged.append(messages[-1]["content"])
        return self.probabilities.get(messages[-1]["content"])


async def _pause_after(
    text: str,
    llm: WordsLocalLLM,
    ends: SentenceEnds | None,
    *,
    smart_turn_ends: bool = False,
    sentence_end_secs: float = 0.3,
    sure_sentence_end_secs: float | None = None,
) -> tuple[Snapshot | None, str]:
    """What was spoken 0.6 s into the pause, and by the end (the floor for other words:
    1 s); with `smart_turn_ends`, smart-turn judged the pause finished once the words
    were in."""
    heard, *_ = await _converse(
        [
            VADUserStartedSpeakingFrame(),
            VADUserStoppedSpeakingFrame(stop_secs=0.0),
            _said(text),
            *([EndTurn()] if smart_turn_ends else []),
            SleepFrame(sleep=0.6),  # past the sentence-end floor, short of the other
            Probe(),
            SleepFrame(sleep=0.8),
        ],
        min_silence_secs=1.0,
        sentence_ends=ends,
        sentence_end_secs=sentence_end_secs,
        sure_sentence_end_secs=sure_sentence_end_secs,
        llm=llm,
    )
    return heard.snapshot, _spoken(heard.frames)


async def test_words_the_llm_judges_to_end_a_sentence_end_the_turn_at_the_shorter_floor() -> None:
    """The held reply's LLM judges the words: a finished question ends the turn at
    `sentence_end_secs` (0.3 s), words that go on at `min_silence_secs` (1 s)."""
    llm = JudgingLocalLLM({"Where is the bakery?": 0.6, "Remind me to water.": 0.02})
    ends = SentenceEnds(threshold=0.08)
    llm.sentence_end = ends
    finished, _ = await _pause_after("Where is the bakery?", llm, ends)
    assert finished is not None and finished.spoken.split() == REPLY.split()
    assert ends.probability("where is the bakery") == 0.6
    going_on, _ = await _pause_after("Remind me to water.", llm, ends)
    assert going_on is not None and going_on.spoken == "", "ended before `min_silence_secs`"
    assert llm.judged == ["Where is the bakery?", "Remind me to water."]
    assert (ends.judged, ends.ended) == (2, 1)


async def test_words_the_llm_is_sure_end_a_sentence_end_the_turn_at_the_shortest_floor() -> None:
    """A probability at `sure_threshold` (0.25) holds the turn to `sure_sentence_end_secs`
    (0.3 s); one above `threshold` only to `sentence_end_secs` (0.9 s, past the probe)."""
    llm = JudgingLocalLLM({"Where is the bakery?": 0.6, "Please call my mother.": 0.1})
    ends = SentenceEnds(threshold=0.08, sure_threshold=0.25)
    llm.sentence_end = ends
    sure, _ = await _pause_after(
        "Where is the bakery?", llm, ends, sentence_end_secs=0.9, sure_sentence_end_secs=0.3
    )
    assert sure is not None and sure.spoken.split() == REPLY.split()
    likely, spoken = await _pause_after(
        "Please call my mother.", llm, ends, sentence_end_secs=0.9, sure_sentence_end_secs=0.3
    )
    assert likely is not None and likely.spoken == "", "ended before `sentence_end_secs`"
    assert spoken.split() == REPLY.split()
    assert (ends.judged, ends.ended, ends.surely_ended) == (2, 2, 1)


async def test_words_whisper_may_have_added_at_a_pause_wait_for_the_usual_floor() -> None:
    """ "I need a gift for it." reads finished to the LLM, but the "it" is often Whisper's
    at a pause after "for": the judgement does not shorten the floor."""
    llm = JudgingLocalLLM({"I need a gift for it.": 0.7})
    ends = SentenceEnds(threshold=0.08)
    llm.sentence_end = ends
    # smart-turn judged such pauses finished ("for |": 0.92-0.97 on the tune half).
    snapshot, spoken = await _pause_after("I need a gift for it.", llm, ends, smart_turn_ends=True)
    assert ends.probability("I need a gift for it.") == 0.7, "judged as usual"
    assert snapshot is not None and snapshot.spoken == "", "ended before `min_silence_secs`"
    assert spoken.split() == REPLY.split()


async def test_a_turn_the_llm_has_not_judged_waits_for_the_usual_floor() -> None:
    """An LLM that cannot judge (None), or no judge at all: the floor stays."""
    for llm, ends in (
        (JudgingLocalLLM({}), SentenceEnds(threshold=0.08)),
        (WordsLocalLLM(reply=REPLY), None),
    ):
        llm.sentence_end = ends
        snapshot, spoken = await _pause_after("Where is the bakery?", llm, ends)
        assert snapshot is not None and snapshot.spoken == ""
        assert spoken.split() == REPLY.split()


async def test_a_held_decision_hears_the_words_that_arrive_while_it_waits() -> None:
    """ "I need a gift for. | My grandfather's birthday.": smart-turn ends the turn after
    the second part before Whisper has transcribed it, so the decision is held on words
    that plainly go on (`goes_on_secs`, 2 s). Once the rest is transcribed the floor is
    enough: the reply comes then, not 2 s after the speech (tune half, 2026-11-23)."""
    heard, llm, context, strategy = await _converse(
        [
            VADUserStartedSpeakingFrame(),
            VADUserStoppedSpeakingFrame(stop_secs=0.0),
            _said("I need a gift for."),
            SleepFrame(sleep=0.3),
            VADUserStartedSpeakingFrame(),
            SleepFrame(sleep=0.3),
            VADUserStoppedSpeakingFrame(stop_secs=0.0),
            EndTurn(),  # smart-turn, before the words are transcribed
            SleepFrame(sleep=0.1),
            _said("My grandfather's birthday."),
            SleepFrame(sleep=0.6),  # past the floor, well short of `goes_on_secs`
            Probe(),
            SleepFrame(sleep=2.0),
        ],
        min_silence_secs=0.3,
        goes_on_secs=2.0,
    )
    assert heard.snapshot is not None
    assert heard.snapshot.spoken.split() == REPLY.split(), "held to the words before the pause"
    assert strategy.held == 1 and strategy.confirmed == 1 and llm.calls == 2
    assert _messages(context) == [
        ("user", "I need a gift for. My grandfather's birthday."),
        ("assistant", REPLY),
    ]


async def test_a_voice_not_yet_confirmed_as_speech_holds_the_decision() -> None:
    """At the floor the VAD hears a voice it has not confirmed as speech: the turn ends
    only when the voice fades (here after 25 looks, 0.5 s)."""
    looks: list[bool] = []

    def hearing_voice() -> bool:
        looks.append(True)
        return len(looks) <= 25

    heard, _, context, strategy = await _converse(
        [
            VADUserStartedSpeakingFrame(),
            VADUserStoppedSpeakingFrame(stop_secs=0.0),
            _said("Turn off the lights."),
            SleepFrame(sleep=0.6),  # past the floor, inside the voice
            Probe(),
            SleepFrame(sleep=1.5),
        ],
        min_silence_secs=0.3,
        hearing_voice=hearing_voice,
    )
    assert heard.snapshot is not None and heard.snapshot.spoken == "", "ended over a voice"
    assert len(looks) == 26 and strategy.confirmed == 1
    assert _messages(context) == [("user", "Turn off the lights."), ("assistant", REPLY)]


async def test_the_floor_waits_for_the_silence_the_vad_has_heard_not_the_clock() -> None:
    """On a busy machine the VAD runs behind: 0.8 s after the stop it has judged only
    0.2 s of the pause silent, so a 0.3 s floor still holds the turn; it ends once the
    VAD has heard 0.3 s of silence."""
    heard_s = [0.2]
    heard, _, context, strategy = await _converse(
        [
            VADUserStartedSpeakingFrame(),
            VADUserStoppedSpeakingFrame(stop_secs=0.0),
            _said("Turn off the lights."),
            SleepFrame(sleep=0.8),  # the clock is well past the floor
            Probe(),
            CatchUp(heard_s=heard_s, seconds=0.35),
            SleepFrame(sleep=0.5),
        ],
        min_silence_secs=0.3,
        silence_heard=lambda: heard_s[0],
    )
    assert heard.snapshot is not None
    assert heard.snapshot.spoken == "" and heard.snapshot.messages == [], "ended by the clock"
    assert strategy.held == 1 and strategy.confirmed == 1
    assert _messages(context) == [("user", "Turn off the lights."), ("assistant", REPLY)]


async def test_a_held_decision_looks_again_on_the_chunk_that_completes_the_floor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Woken by each chunk of audio counted, the held decision ends the turn on the chunk
    that completes the floor, not at its next look on a timer (here 5 s away)."""
    monkeypatch.setattr(speculative, "RECHECK_S", 30.0)
    heard_s = [0.0]
    watchers: list[Callable[[], None]] = []
    heard, _, context, strategy = await _converse(
        [
            VADUserStartedSpeakingFrame(),
            VADUserStoppedSpeakingFrame(stop_secs=0.0),
            _said("Turn off the lights."),
            SleepFrame(sleep=0.3),
            CatchUp(heard_s=heard_s, seconds=5.1, watchers=watchers),
            SleepFrame(sleep=1.0),
            Probe(),
        ],
        min_silence_secs=5.0,
        silence_heard=lambda: heard_s[0],
        watch_audio=watchers.append,
    )
    assert len(watchers) == 1
    assert heard.snapshot is not None
    assert heard.snapshot.spoken.split() == REPLY.split(), "waited for the timer"
    assert strategy.held == 1 and strategy.confirmed == 1
    assert _messages(context) == [("user", "Turn off the lights."), ("assistant", REPLY)]


async def test_audio_that_stops_coming_does_not_hold_the_turn_for_ever() -> None:
    """A muted microphone or a stalled transport: the VAD's count stops at 0.1 s, its last
    window an unconfirmed voice. The clock ends the wait `vad_lag_limit_secs` after the
    floor, and the held reply is spoken."""
    heard, _, context, strategy = await _converse(
        [
            VADUserStartedSpeakingFrame(),
            VADUserStoppedSpeakingFrame(stop_secs=0.0),
            _said("Turn off the lights."),
            SleepFrame(sleep=0.3),  # past the floor on the clock, not yet past the limit
            Probe(),
            SleepFrame(sleep=1.2),
        ],
        min_silence_secs=0.2,
        hearing_voice=lambda: True,
        silence_heard=lambda: 0.1,
        vad_lag_limit_secs=0.5,
    )
    assert heard.snapshot is not None
    assert heard.snapshot.spoken == "", "the clock ended the wait before the limit"
    assert strategy.held == 1 and strategy.confirmed == 1
    assert _spoken(heard.frames).split() == REPLY.split()
    assert _messages(context) == [("user", "Turn off the lights."), ("assistant", REPLY)]


def _stages_that_synthesise_ahead(
    reply: str = REPLY,
) -> tuple[WordsLocalLLM, PiperTTSService, RecordingPiperVoice]:
    """Our local LLM base and Piper service (stand-in model and voice), wired as a session's."""
    llm = WordsLocalLLM(reply=reply)
    voice = RecordingPiperVoice()
    tts = PiperTTSService(voice=voice, voice_name="rec")  # type: ignore[arg-type]
    speak_first_clause_early(tts, 4)
    llm.ahead = FirstPieceAhead(tts, min_words=4)
    return llm, tts, voice


async def test_a_held_replys_first_piece_is_synthesised_before_the_turn_is_confirmed() -> None:
    llm, tts, voice = _stages_that_synthesise_ahead()
    heard, _, context, strategy = await _converse(
        [
            VADUserStartedSpeakingFrame(),
            VADUserStoppedSpeakingFrame(),
            _said("I'd like a table for two at"),  # reads unfinished: speculate
            SleepFrame(sleep=0.6),  # the reply is written, held, its first piece synthesised
            Probe(),
            EndTurn(),
            SleepFrame(sleep=0.5),
        ],
        llm=llm,
        tts=tts,
    )
    assert heard.snapshot is not None and heard.snapshot.spoken == "", "spoken before confirmed"
    assert strategy.speculated == 1 and strategy.confirmed == 1
    assert tts.ahead == AheadCounts(started=1, used=1, dropped=0)
    assert voice.texts == [REPLY], "the first piece was synthesised twice"
    assert _spoken(heard.frames).split() == REPLY.split()
    assert _messages(context) == [("user", "I'd like a table for two at"), ("assistant", REPLY)]


async def test_a_withdrawn_replys_early_audio_is_dropped() -> None:
    llm, tts, voice = _stages_that_synthesise_ahead()
    heard, _, context, strategy = await _converse(
        [
            VADUserStartedSpeakingFrame(),
            VADUserStoppedSpeakingFrame(),
            _said("I'd like a table for"),
            SleepFrame(sleep=0.6),  # held, first piece synthesised ahead
            VADUserStartedSpeakingFrame(),  # the person goes on
            SleepFrame(sleep=0.3),
            VADUserStoppedSpeakingFrame(),
            _said("two people at seven."),  # reads complete: answered at once
            SleepFrame(sleep=0.6),
        ],
        llm=llm,
        tts=tts,
    )
    assert strategy.withdrawn == 1 and llm.calls == 2
    assert tts.ahead == AheadCounts(started=1, used=0, dropped=1)
    assert voice.texts == [REPLY, REPLY], "the answer was not synthesised afresh"
    assert _spoken(heard.frames).split() == REPLY.split(), "the withdrawn audio was played"
    assert _messages(context) == [
        ("user", "I'd like a table for two people at seven."),
        ("assistant", REPLY),
    ]


# Its first piece (`min_words=4`) is the first sentence: 7 words of 18.
LONG_REPLY = "Sure, a table for two at seven. I will call them now and ask them to hold it."


async def test_a_held_reply_waits_after_its_first_piece_until_the_turn_is_confirmed() -> None:
    llm, tts, voice = _stages_that_synthesise_ahead(LONG_REPLY)
    heard, _, context, strategy = await _converse(
        [
            VADUserStartedSpeakingFrame(),
            VADUserStoppedSpeakingFrame(),
            _said("I'd like a table for two at"),
            SleepFrame(sleep=0.6),  # 18 words would take 0.36 s
            Probe(),
            EndTurn(),
            SleepFrame(sleep=0.6),
        ],
        llm=llm,
        tts=tts,
    )
    assert heard.snapshot is not None and heard.snapshot.spoken == ""
    # The first piece, and the words the model wrote (20 ms each) before the event loop
    # told it to wait: one on a quiet machine, a few more on a busy one.
    assert 7 <= heard.snapshot.written[0] <= 12, heard.snapshot.written
    assert voice.texts[0] == "Sure, a table for two at seven."
    assert strategy.confirmed == 1 and llm.written == [18]
    assert _spoken(heard.frames).split() == LONG_REPLY.split()
    assert _messages(context)[-1] == ("assistant", LONG_REPLY)


async def test_a_withdrawn_held_reply_costs_only_its_first_piece() -> None:
    llm, tts, voice = _stages_that_synthesise_ahead(LONG_REPLY)
    heard, _, context, strategy = await _converse(
        [
            VADUserStartedSpeakingFrame(),
            VADUserStoppedSpeakingFrame(),
            _said("I'd like a table for"),
            SleepFrame(sleep=0.6),
            VADUserStartedSpeakingFrame(),  # the person goes on
            SleepFrame(sleep=0.3),
            VADUserStoppedSpeakingFrame(),
            _said("two people at seven."),
            SleepFrame(sleep=0.8),
        ],
        llm=llm,
        tts=tts,
    )
    assert strategy.withdrawn == 1 and llm.calls == 2
    assert 7 <= llm.written[0] <= 12 and llm.written[1] == 18, llm.written
    assert voice.texts[0] == "Sure, a table for two at seven.", "no first piece ahead"
    assert _spoken(heard.frames).split() == LONG_REPLY.split()
    assert _messages(context)[-1] == ("assistant", LONG_REPLY)


async def test_a_held_reply_writes_on_when_another_reply_waits_for_the_model() -> None:
    """A held reply waiting for its turn to end must not keep other sessions waiting."""
    llm, tts, _ = _stages_that_synthesise_ahead(LONG_REPLY)
    heard, _, context, strategy = await _converse(
        [
            VADUserStartedSpeakingFrame(),
            VADUserStoppedSpeakingFrame(),
            _said("I'd like a table for two at"),
            SleepFrame(sleep=0.6),
            AskModel(),
            SleepFrame(sleep=0.6),
            Probe(),
            EndTurn(),
            SleepFrame(sleep=0.6),
        ],
        llm=llm,
        tts=tts,
    )
    assert heard.other_reply is not None and heard.other_reply.done(), "it still waits"
    assert heard.snapshot is not None and heard.snapshot.spoken == "", "spoken before confirmed"
    assert heard.snapshot.written == [18]
    assert strategy.confirmed == 1 and _spoken(heard.frames).split() == LONG_REPLY.split()
    assert _messages(context)[-1] == ("assistant", LONG_REPLY)


async def test_a_session_that_ends_while_a_reply_is_held_ends_at_once() -> None:
    """The EndFrame queues behind the held reply: the reply writes on, the session ends."""
    llm, tts, _ = _stages_that_synthesise_ahead(LONG_REPLY)
    started = time.perf_counter()
    await asyncio.wait_for(
        _converse(
            [
                VADUserStartedSpeakingFrame(),
                VADUserStoppedSpeakingFrame(),
                _said("I'd like a table for two at"),
                SleepFrame(sleep=0.6),  # held after its first piece; then the EndFrame
            ],
            llm=llm,
            tts=tts,
        ),
        timeout=60,
    )
    # The held reply wrote on to its end. (Ending, Pipecat writes the open turn to the
    # context, and a second reply may begin before the session is gone.)
    assert llm.written[0] == 18, llm.written
    # Well inside local.HELD_LIMIT_S (10 s): the end, not the limit, let the reply go on.
    assert time.perf_counter() - started < local.HELD_LIMIT_S / 2


async def test_a_held_reply_writes_on_after_the_longest_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(local, "HELD_LIMIT_S", 0.2)
    llm, tts, _ = _stages_that_synthesise_ahead(LONG_REPLY)
    heard, _, _, _ = await _converse(
        [
            VADUserStartedSpeakingFrame(),
            VADUserStoppedSpeakingFrame(),
            _said("I'd like a table for two at"),
            SleepFrame(sleep=1.0),  # the turn is neither confirmed nor withdrawn
            Probe(),
            EndTurn(),
            SleepFrame(sleep=0.5),
        ],
        llm=llm,
        tts=tts,
    )
    assert heard.snapshot is not None and heard.snapshot.spoken == ""
    assert heard.snapshot.written == [18]
    assert _spoken(heard.frames).split() == LONG_REPLY.split()


async def test_words_before_a_pause_ready_after_the_person_went_on_do_not_end_the_turn() -> None:
    """A busy machine: "Remind me what the weather" is transcribed after the VAD heard
    "will be like on Friday" begin (turns/segments.py). A detector ends the turn at the
    second stop; it waits for the second half's words, then answers both."""
    first = "Remind me what the weather."
    heard, _, context, strategy = await _converse(
        [
            VADUserStartedSpeakingFrame(),
            VADUserStoppedSpeakingFrame(),
            VADUserStartedSpeakingFrame(),
            TranscriptionFrame(
                text=first, user_id="user", timestamp="now", result=SegmentTranscript(True)
            ),
            VADUserStoppedSpeakingFrame(),
            EndTurn(),
            SleepFrame(sleep=0.3),
            Probe(),
            _said("We'll be like on Friday."),
            SleepFrame(sleep=0.5),
        ],
    )
    assert heard.snapshot is not None and heard.snapshot.messages == [], "ended on half the words"
    assert heard.snapshot.spoken == ""
    assert strategy.confirmed == 1
    assert _messages(context) == [
        ("user", f"{first} We'll be like on Friday."),
        ("assistant", REPLY),
    ]


async def test_a_speculation_in_the_turn_after_an_answered_one_is_released() -> None:
    """ "Can you remind me to call? [answered] My dentist tomorrow," (unfinished: held)."""
    heard, llm, context, strategy = await _converse(
        [
            VADUserStartedSpeakingFrame(),
            VADUserStoppedSpeakingFrame(),
            _said("Can you remind me to call?"),
            SleepFrame(sleep=0.5),
            VADUserStartedSpeakingFrame(),
            SleepFrame(sleep=0.2),
            VADUserStoppedSpeakingFrame(),
            _said("My dentist tomorrow,"),
            SleepFrame(sleep=0.5),
            EndTurn(),
            SleepFrame(sleep=0.5),
        ]
    )
    assert strategy.speculated == 1 and strategy.confirmed == 1
    assert llm.calls == 2
    assert _spoken(heard.frames).split() == REPLY.split() * 2
    assert [role for role, _ in _messages(context)] == ["user", "assistant"] * 2


async def test_a_turn_that_reads_complete_is_answered_without_speculating() -> None:
    heard, llm, _, strategy = await _converse(
        [
            VADUserStartedSpeakingFrame(),
            VADUserStoppedSpeakingFrame(),
            _said("What time do you open?"),
            SleepFrame(sleep=0.5),
        ]
    )
    assert strategy.speculated == 0
    assert llm.calls == 1
    assert _spoken(heard.frames).split() == REPLY.split()


async def test_without_speculation_the_llm_waits_for_the_turn() -> None:
    heard, llm, _, _ = await _converse(
        [
            VADUserStartedSpeakingFrame(),
            VADUserStoppedSpeakingFrame(),
            _said("I'd like a table for two at"),
            SleepFrame(sleep=0.3),
            Probe(),
            SleepFrame(sleep=0.1),
            EndTurn(),
            SleepFrame(sleep=0.5),
        ],
        speculative=False,
    )
    assert heard.snapshot is not None and heard.snapshot.llm_calls == 0
    assert llm.calls == 1
    assert _spoken(heard.frames).split() == REPLY.split()


async def test_a_paused_request_over_ws_is_answered_and_a_withdrawn_answer_never_heard(
    models: SharedModels, settings: Settings, tmp_path: Path
) -> None:
    """Real models: "I'd like to book a table for [1.2 s] four people." When the pause's
    transcript is answered speculatively, the rest of the sentence withdraws that answer
    and the bot answers after the last words; whether smart-turn ends the turn at the
    pause instead is up to it (then nothing is speculated)."""
    speculative = settings.model_copy(
        update={"turn": settings.turn.model_copy(update={"speculative": True})}
    )
    halves = []
    for i, text in enumerate(("I'd like to book a table for", "four people.")):
        path = tmp_path / f"half{i}.wav"
        await asyncio.to_thread(voice_set._piper, text, path)  # the bundled voice, noise on
        halves.append(load_pcm16k(path))
    pcm = np.concatenate([halves[0], np.zeros(int(1.2 * 16000), np.int16), halves[1]])
    messages: list[str] = []
    sink = logger.add(
        lambda m: messages.append(m.record["message"]),
        level="DEBUG",
        filter=lambda r: r["name"] == "voicebot.turns.speculative",
    )
    try:
        async with LocalServer(speculative, models=models) as server:
            result = await run_turn(server.ws_url, pcm)
    finally:
        logger.remove(sink)

    assert "table" in words(result.transcript), result.transcript
    assert result.reply and result.reply_audio_s > 0.5
    kinds = [e["type"] for e in result.events]
    speculated = "answering the turn speculatively while its end is weighed"
    if speculated not in messages or messages[messages.index(speculated) + 1 :][:1] == [
        "the held reply answers the turn"
    ]:
        # The turn ended at the pause (smart-turn, or a transcript that read complete after
        # `turn.min_silence_secs`) and its held reply was the answer, or the first half was
        # transcribed only after the second began: ordinary turn-taking applies.
        return
    # Answered on "...a table for": the rest of the sentence withdrew that answer, and
    # nothing of it was heard; the one answer came after the last words.
    assert "withdrawing the speculative reply" in messages, messages
    last_transcript = max(i for i, k in enumerate(kinds) if k == "transcript")
    assert kinds.index("bot_started_speaking") > last_transcript, kinds


def test_the_llm_judges_sentence_ends_only_when_a_shorter_floor_uses_it() -> None:
    """A `turn.sentence_end_secs` shorter than `turn.min_silence_secs` (the defaults: 0.8
    and 0.9 s) asks an LLM that can judge; one floor for all words judges nothing (no
    extra read of the prompt)."""
    one_floor = Settings.model_validate({"turn": {"sentence_end_secs": 0.9}})
    assert judge_sentence_ends(one_floor, JudgingLocalLLM({})) is None
    default = judge_sentence_ends(Settings(), JudgingLocalLLM({}))
    assert default is not None and default.sure_threshold == 0.25
    shorter = Settings.model_validate({"turn": {"sentence_end_secs": 0.6}})
    assert judge_sentence_ends(shorter, WordsLocalLLM(reply=REPLY)) is None  # cannot judge
    llm = JudgingLocalLLM({})
    ends = judge_sentence_ends(shorter, llm)
    assert ends is not None and llm.sentence_end is ends
    assert ends.threshold == shorter.turn.sentence_end_probability
    # The sure floor (0.6 s) is not below this one: no sure tier.
    assert ends.sure_threshold is None
    unspeculative = Settings.model_validate(
        {"turn": {"sentence_end_secs": 0.6, "speculative": False}}
    )
    assert judge_sentence_ends(unspeculative, JudgingLocalLLM({})) is None
