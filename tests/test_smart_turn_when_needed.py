"""smart-turn judges a pause only when its words do not read complete
(`turn.smart_turn_when_needed`).

The analyzer's own logic is tested with a verdict the test scripts; one test runs the
real bundled model on a kept pause; the last ones run the pipeline's turn strategies
(`pipeline._turn_stop_strategies`) inside Pipecat's real user aggregator.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from pipecat.audio.turn.base_turn_analyzer import EndOfTurnState
from pipecat.frames.frames import (
    Frame,
    InputAudioRawFrame,
    TranscriptionFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.metrics.metrics import TurnMetricsData
from pipecat.pipeline.pipeline import Pipeline
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import (
    LLMContextAggregatorPair,
    LLMUserAggregatorParams,
)
from pipecat.tests.utils import SleepFrame, run_test
from pipecat.turns.user_turn_strategies import UserTurnStrategies

from tests.fakes import FakeLLMService, FakeTTSService
from voicebot import pipeline
from voicebot.audio.sessions import load_smart_turn_session
from voicebot.audio.smart_turn import SharedSmartTurnAnalyzer
from voicebot.config import Settings

RATE = 16000
PIECE = 640  # 20 ms of 16-bit PCM at 16 kHz
REPLY = "The museum opens at nine."


def _pcm(seconds: float, level: float) -> bytes:
    rng = np.random.default_rng(0)
    return (rng.standard_normal(int(RATE * seconds)) * level).astype(np.int16).tobytes()


def _pieces(pcm: bytes) -> list[bytes]:
    return [pcm[i : i + PIECE] for i in range(0, len(pcm), PIECE)]


def _feed(analyzer: SharedSmartTurnAnalyzer, pcm: bytes, *, speech: bool) -> list[EndOfTurnState]:
    return [analyzer.append_audio(piece, is_speech=speech) for piece in _pieces(pcm)]


class Scripted(SharedSmartTurnAnalyzer):
    """The real analyzer with the model's verdict given by the test; records what it judged."""

    verdict = EndOfTurnState.COMPLETE

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("session", None)
        super().__init__(**kwargs)
        self.set_sample_rate(RATE)
        self.judged_samples: list[int] = []

    async def judge(self, heard: list[tuple[float, Any]]) -> tuple[EndOfTurnState, Any]:
        self.judged_samples.append(sum(len(pcm) for _, pcm in heard))
        metrics = TurnMetricsData(
            processor="test",
            is_complete=self.verdict == EndOfTurnState.COMPLETE,
            probability=1.0,
            e2e_processing_time_ms=0.0,
        )
        return self.verdict, metrics


def _spoke_then_paused(analyzer: SharedSmartTurnAnalyzer) -> None:
    _feed(analyzer, _pcm(1.0, 3000), speech=True)
    _feed(analyzer, _pcm(0.2, 30), speech=False)


async def test_a_pause_whose_words_read_complete_is_never_judged() -> None:
    analyzer = Scripted(judge_on_words=True)
    _spoke_then_paused(analyzer)
    assert await analyzer.analyze_end_of_turn() == (EndOfTurnState.INCOMPLETE, None)
    await analyzer.words_read(True)
    assert EndOfTurnState.COMPLETE not in _feed(analyzer, _pcm(0.4, 30), speech=False)
    assert analyzer.judged == 0 and analyzer.skipped == 1 and analyzer.judged_samples == []


async def test_a_pause_whose_words_do_not_is_judged_on_its_own_audio_when_they_arrive() -> None:
    analyzer = Scripted(judge_on_words=True)
    _spoke_then_paused(analyzer)
    assert await analyzer.analyze_end_of_turn() == (EndOfTurnState.INCOMPLETE, None)
    _feed(analyzer, _pcm(0.4, 30), speech=False)  # Whisper transcribes meanwhile
    verdicts: list[EndOfTurnState] = []

    async def heard(state: EndOfTurnState) -> None:
        verdicts.append(state)

    analyzer.add_verdict_listener(heard)
    await analyzer.words_read(False)
    assert verdicts == [EndOfTurnState.COMPLETE]
    assert analyzer.judged == 1 and analyzer.skipped == 0
    # The pause as it was at the VAD's stop, not the 0.4 s of silence heard since.
    assert analyzer.judged_samples == [int(RATE * 1.2)]
    # Pipecat's strategy hears of it with the next piece of audio and asks for it.
    assert _feed(analyzer, _pcm(0.02, 30), speech=False) == [EndOfTurnState.COMPLETE]
    state, metrics = await analyzer.analyze_end_of_turn()
    assert state == EndOfTurnState.COMPLETE and metrics is not None
    assert analyzer.heard() == [], "a finished turn's audio was kept"
    assert _feed(analyzer, _pcm(0.02, 30), speech=False) == [EndOfTurnState.INCOMPLETE]


async def test_an_unfinished_verdict_leaves_the_turn_to_the_silence_limit() -> None:
    analyzer = Scripted(judge_on_words=True)
    analyzer.verdict = EndOfTurnState.INCOMPLETE
    _spoke_then_paused(analyzer)
    await analyzer.analyze_end_of_turn()
    await analyzer.words_read(False)
    assert analyzer.judged == 1
    assert EndOfTurnState.COMPLETE not in _feed(analyzer, _pcm(0.4, 30), speech=False)


async def test_words_known_unfinished_before_the_stop_are_judged_at_the_stop() -> None:
    """Whisper's early start can deliver the words before the VAD reports the stop."""
    analyzer = Scripted(judge_on_words=True)
    _feed(analyzer, _pcm(1.0, 3000), speech=True)
    await analyzer.words_read(False)
    _feed(analyzer, _pcm(0.2, 30), speech=False)
    state, _ = await analyzer.analyze_end_of_turn()
    assert state == EndOfTurnState.COMPLETE and analyzer.judged == 1


async def test_speech_after_the_pause_drops_it_unjudged() -> None:
    analyzer = Scripted(judge_on_words=True)
    _spoke_then_paused(analyzer)
    await analyzer.analyze_end_of_turn()
    _feed(analyzer, _pcm(0.3, 3000), speech=True)  # "... | four people."
    await analyzer.words_read(False)  # the first half's words, late
    assert analyzer.judged == 0
    assert EndOfTurnState.COMPLETE not in _feed(analyzer, _pcm(0.1, 30), speech=False)


async def test_words_still_to_come_do_not_judge_the_pause() -> None:
    analyzer = Scripted(judge_on_words=True)
    _spoke_then_paused(analyzer)
    await analyzer.analyze_end_of_turn()
    await analyzer.words_read(None)
    assert analyzer.judged == 0
    await analyzer.words_read(False)
    assert analyzer.judged == 1


async def test_without_judge_on_words_every_pause_is_judged_at_the_stop() -> None:
    analyzer = Scripted()
    _spoke_then_paused(analyzer)
    state, metrics = await analyzer.analyze_end_of_turn()
    assert state == EndOfTurnState.COMPLETE and metrics is not None
    assert analyzer.judged == 1 and analyzer.skipped == 0


async def test_the_real_model_judges_a_kept_pause() -> None:
    analyzer = SharedSmartTurnAnalyzer(session=load_smart_turn_session(), judge_on_words=True)
    analyzer.set_sample_rate(RATE)
    _spoke_then_paused(analyzer)
    await analyzer.analyze_end_of_turn()
    verdicts: list[EndOfTurnState] = []

    async def heard(state: EndOfTurnState) -> None:
        verdicts.append(state)

    analyzer.add_verdict_listener(heard)
    await analyzer.words_read(False)
    assert analyzer.judged == 1 and len(verdicts) == 1
    await analyzer.cleanup()


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({}, True),
        ({"smart_turn_when_needed": False}, False),
        ({"speculative": False}, False),  # no floor: smart-turn's COMPLETE ends sooner
        ({"end_on_complete_transcript": False}, False),
        ({"complete_transcript_alone_after_secs": 1.2}, False),  # past the 0.9 s floor
    ],
)
def test_only_where_the_verdict_cannot_matter(overrides: dict[str, Any], expected: bool) -> None:
    settings = Settings.model_validate({"turn": overrides})
    assert pipeline._smart_turn_only_when_needed(settings) is expected


def _said(text: str) -> TranscriptionFrame:
    return TranscriptionFrame(text=text, user_id="user", timestamp="now")


def _audio(seconds: float, level: float) -> list[Frame]:
    return [
        InputAudioRawFrame(audio=piece, sample_rate=RATE, num_channels=1)
        for piece in _pieces(_pcm(seconds, level))
    ]


async def _turn(
    monkeypatch: pytest.MonkeyPatch, words: str, *, when_needed: bool = True
) -> tuple[Scripted, list[Any]]:
    """One turn through the pipeline's stop strategies in Pipecat's user aggregator:
    speech, a pause whose transcript comes 0.3 s into it, then silence. A verdict reached
    after the VAD's stop reaches Pipecat's strategy with the next piece of audio."""
    made: list[Scripted] = []

    class Made(Scripted):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            made.append(self)

    class Models:
        smart_turn_session = object()  # the scripted analyzer runs no model

    monkeypatch.setattr(pipeline, "SharedSmartTurnAnalyzer", Made)
    settings = Settings.model_validate(
        {
            "turn": {
                "smart_turn_when_needed": when_needed,
                "min_silence_secs": 0.3,
                "complete_transcript_alone_after_secs": 0.2,
                "max_silence_secs": 5.0,
            }
        }
    )
    stop = pipeline._turn_stop_strategies(settings, Models(), None)  # type: ignore[arg-type]
    context = LLMContext()
    pair = LLMContextAggregatorPair(
        context,
        user_params=LLMUserAggregatorParams(
            empty_user_turn=None, user_turn_strategies=UserTurnStrategies(stop=stop)
        ),
    )
    llm = FakeLLMService(reply=REPLY, word_delay_s=0.01)
    frames: list[Frame] = [
        VADUserStartedSpeakingFrame(),
        *_audio(1.0, 3000),
        VADUserStoppedSpeakingFrame(stop_secs=0.0),
        *_audio(0.3, 30),
        _said(words),
        # Audio is a system frame, handled ahead of queued ones: the words first.
        SleepFrame(sleep=0.1),
        *_audio(1.0, 30),
        SleepFrame(sleep=0.8),
    ]
    await run_test(
        Pipeline([pair.user(), llm, FakeTTSService(), pair.assistant()]), frames_to_send=frames
    )
    assert len(made) == 1
    answered = [m.get("content") for m in context.messages if isinstance(m, dict)]
    return made[0], answered


async def test_a_turn_that_reads_complete_ends_without_smart_turn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    analyzer, answered = await _turn(monkeypatch, "What time does the museum open?")
    assert answered == ["What time does the museum open?", REPLY]
    assert analyzer.judged == 0 and analyzer.skipped == 1


async def test_a_turn_that_does_not_is_ended_by_smart_turns_late_verdict(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    analyzer, answered = await _turn(monkeypatch, "Yes")
    assert answered == ["Yes", REPLY], "the turn waited for the silence limit"
    assert analyzer.judged == 1 and analyzer.judged_samples == [int(RATE * 1.0)]


async def test_switched_off_every_pause_is_judged_at_the_stop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    analyzer, answered = await _turn(
        monkeypatch, "What time does the museum open?", when_needed=False
    )
    assert answered == ["What time does the museum open?", REPLY]
    assert analyzer.judged == 1 and analyzer.skipped == 0
