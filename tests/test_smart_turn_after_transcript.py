"""smart-turn is asked about a pause only once its transcript does not read complete.

Small fakes, real logic: Pipecat's real user and assistant aggregators with the VAD
inside, a segmented STT on Pipecat's base that answers a set time after each segment,
and smart-turn on Pipecat's `BaseSmartTurn` (its buffering and silence limit) with a
stand-in model that gives the test's verdict and records how much audio it judged.
Pipecat's own `TurnAnalyzerUserTurnStopStrategy` runs over the same audio as the
reference. Audio is paced in real time: a few seconds a test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from pipecat.audio.turn.smart_turn.base_smart_turn import BaseSmartTurn, SmartTurnParams
from pipecat.audio.vad.vad_analyzer import VADParams
from pipecat.frames.frames import Frame, InputAudioRawFrame, UserStoppedSpeakingFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import (
    LLMContextAggregatorPair,
    LLMUserAggregatorParams,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.tests.utils import run_test
from pipecat.turns.user_stop.base_user_turn_stop_strategy import BaseUserTurnStopStrategy
from pipecat.turns.user_stop.turn_analyzer_user_turn_stop_strategy import (
    TurnAnalyzerUserTurnStopStrategy,
)
from pipecat.turns.user_turn_strategies import UserTurnStrategies

from tests.fakes import FakeLLMService, FakeTTSService
from tests.helpers import tweak
from tests.test_late_transcripts import CHUNK_S, RATE, LateSTT, SmartTurnVerdict, _audio
from voicebot.audio.energy_vad import EnergyVADAnalyzer
from voicebot.config import Settings
from voicebot.pipeline import user_turn_strategies
from voicebot.turns.complete_transcript import CompleteTranscriptUserTurnStopStrategy
from voicebot.turns.smart_turn_after_transcript import SmartTurnAfterTranscriptStopStrategy

MAX_SILENCE_S = 1.0
STT_DELAY_S = 0.4
QUESTION = "What is the capital of France?"
UNFINISHED = "I'd like to book a table for"


class VerdictSmartTurn(BaseSmartTurn):
    """Pipecat's smart-turn base (buffer, silence limit) with the test's verdict."""

    def __init__(self, *, complete: bool) -> None:
        super().__init__(params=SmartTurnParams(stop_secs=MAX_SILENCE_S))
        self.complete = complete
        self.judged_s: list[float] = []

    def _predict_endpoint(self, audio_array: np.ndarray) -> dict[str, Any]:
        self.judged_s.append(len(audio_array) / RATE)
        return {"prediction": int(self.complete), "probability": 0.9 if self.complete else 0.1}


@dataclass
class Seen:
    llm_calls: int = 0
    # Audio chunks that had passed the user aggregator when the turn ended.
    chunks_at_turn_end: list[int] = field(default_factory=list)


class Watch(FrameProcessor):
    def __init__(self, llm: FakeLLMService) -> None:
        super().__init__()
        self.seen = Seen()
        self._llm = llm
        self._chunks = 0

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            self._chunks += 1
        elif isinstance(frame, UserStoppedSpeakingFrame):
            self.seen.chunks_at_turn_end.append(self._chunks)
        self.seen.llm_calls = self._llm.calls
        await self.push_frame(frame, direction)


async def converse(
    stop: list[BaseUserTurnStopStrategy],
    speech: list[tuple[bool, float]],
    texts: list[str],
) -> Seen:
    llm = FakeLLMService(reply="Sure.")
    pair = LLMContextAggregatorPair(
        LLMContext(),
        user_params=LLMUserAggregatorParams(
            vad_analyzer=EnergyVADAnalyzer(params=VADParams(stop_secs=0.2, min_volume=0.0)),
            empty_user_turn=None,
            user_turn_strategies=UserTurnStrategies(stop=stop),
        ),
    )
    watch = Watch(llm)
    pipeline = Pipeline(
        [
            LateSTT(texts, [STT_DELAY_S] * len(texts)),
            pair.user(),
            watch,
            llm,
            FakeTTSService(),
            pair.assistant(),
        ]
    )
    frames = [f for voiced, seconds in speech for f in _audio(seconds, voiced=voiced)]
    await run_test(
        pipeline,
        frames_to_send=frames,
        pipeline_params=PipelineParams(audio_in_sample_rate=RATE),
    )
    return watch.seen


def ours(smart_turn: VerdictSmartTurn) -> list[BaseUserTurnStopStrategy]:
    return [
        CompleteTranscriptUserTurnStopStrategy(),
        SmartTurnAfterTranscriptStopStrategy(turn_analyzer=smart_turn),
    ]


def pipecats(smart_turn: VerdictSmartTurn) -> list[BaseUserTurnStopStrategy]:
    return [
        CompleteTranscriptUserTurnStopStrategy(),
        TurnAnalyzerUserTurnStopStrategy(turn_analyzer=smart_turn),
    ]


ONE_UTTERANCE = [(True, 1.2), (False, 2.5)]


async def test_a_complete_question_never_runs_the_model() -> None:
    smart_turn = VerdictSmartTurn(complete=False)
    stop = ours(smart_turn)
    seen = await converse(stop, ONE_UTTERANCE, [QUESTION])
    assert seen.llm_calls == 1 and len(seen.chunks_at_turn_end) == 1
    assert smart_turn.judged_s == []
    strategy = stop[1]
    assert isinstance(strategy, SmartTurnAfterTranscriptStopStrategy)
    assert strategy.analyzed == 0

    # Pipecat's strategy runs the model at the VAD's stop all the same.
    reference = VerdictSmartTurn(complete=False)
    assert (await converse(pipecats(reference), ONE_UTTERANCE, [QUESTION])).llm_calls == 1
    assert len(reference.judged_s) == 1


async def test_an_unfinished_transcript_is_judged_on_the_audio_up_to_the_vad_stop() -> None:
    smart_turn = VerdictSmartTurn(complete=True)
    stop = ours(smart_turn)
    seen = await converse(stop, ONE_UTTERANCE, [UNFINISHED])
    assert seen.llm_calls == 1
    strategy = stop[1]
    assert isinstance(strategy, SmartTurnAfterTranscriptStopStrategy)
    assert (strategy.analyzed, strategy.ended_by_model, strategy.ended_by_silence) == (1, 1, 0)

    # The model heard what Pipecat's strategy gives it at the VAD's stop, not the silence
    # that came while Whisper worked (STT_DELAY_S = 20 chunks).
    reference = VerdictSmartTurn(complete=True)
    await converse(pipecats(reference), ONE_UTTERANCE, [UNFINISHED])
    assert len(smart_turn.judged_s) == len(reference.judged_s) == 1
    assert smart_turn.judged_s[0] == pytest.approx(reference.judged_s[0], abs=2 * CHUNK_S)
    # And the turn ended on the verdict, long before the silence limit.
    silence_limit_chunks = (1.2 + 0.2 + MAX_SILENCE_S) / CHUNK_S
    assert seen.chunks_at_turn_end[0] < silence_limit_chunks - 5


async def test_the_silence_limit_is_counted_from_the_vad_stop_as_before() -> None:
    smart_turn = VerdictSmartTurn(complete=False)
    stop = ours(smart_turn)
    seen = await converse(stop, ONE_UTTERANCE, [UNFINISHED])
    strategy = stop[1]
    assert isinstance(strategy, SmartTurnAfterTranscriptStopStrategy)
    assert (strategy.analyzed, strategy.ended_by_model, strategy.ended_by_silence) == (1, 0, 1)
    assert seen.llm_calls == 1

    reference = VerdictSmartTurn(complete=False)
    before = await converse(pipecats(reference), ONE_UTTERANCE, [UNFINISHED])
    # Both end the turn when the same audio chunk has come (the held audio was counted).
    assert abs(seen.chunks_at_turn_end[0] - before.chunks_at_turn_end[0]) <= 2


async def test_words_after_a_pause_are_not_judged_on_the_stale_transcript() -> None:
    # The person goes on before the first piece's transcript comes; the whole request
    # then reads complete and the model never runs.
    smart_turn = VerdictSmartTurn(complete=True)
    stop = ours(smart_turn)
    seen = await converse(
        stop,
        [(True, 1.2), (False, 0.3), (True, 0.8), (False, 2.0)],
        [UNFINISHED, "four people."],
    )
    assert seen.llm_calls == 1 and len(seen.chunks_at_turn_end) == 1
    assert smart_turn.judged_s == []


async def test_no_words_no_turn_end_by_silence() -> None:
    # Whisper heard nothing (a cough): the silence limit alone does not end a turn.
    smart_turn = VerdictSmartTurn(complete=False)
    stop = ours(smart_turn)
    seen = await converse(stop, ONE_UTTERANCE, [""])
    assert seen.llm_calls == 0
    assert smart_turn.judged_s == []


def test_the_session_uses_it_only_beside_the_complete_transcript_check() -> None:
    models = SimpleNamespace(smart_turn_session=SmartTurnVerdict(0.5))

    def stop_types(**turn: Any) -> list[str]:
        settings = tweak(Settings(), turn=turn)
        strategies = user_turn_strategies(settings, models)  # type: ignore[arg-type]
        return [type(s).__name__ for s in strategies.stop or []]

    assert stop_types() == [
        "CompleteTranscriptUserTurnStopStrategy",
        "SmartTurnAfterTranscriptStopStrategy",
    ]
    assert stop_types(smart_turn_after_transcript=False)[1] == "TurnAnalyzerUserTurnStopStrategy"
    # Without the transcript check there is nothing to wait for: Pipecat's strategy.
    assert stop_types(end_on_complete_transcript=False) == ["TurnAnalyzerUserTurnStopStrategy"]
