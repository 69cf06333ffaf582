"""smart-turn's model runs on a thread of its own at a lower priority than Whisper.

The real smart-turn model (bundled with Pipecat) runs through Pipecat's analyzer; what is
checked is the thread it ran on: its name and its nice value relative to this thread's.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest
from pipecat.audio.turn.base_turn_analyzer import EndOfTurnState

from tests.helpers import thread_nice
from voicebot import pipeline
from voicebot.audio.sessions import load_smart_turn_session
from voicebot.audio.smart_turn import SharedSmartTurnAnalyzer
from voicebot.config import Settings

pytestmark = pytest.mark.skipif(not hasattr(os, "getpriority"), reason="no thread priorities")


async def _analyse_a_second_of_speech(analyzer: SharedSmartTurnAnalyzer) -> list[int]:
    """Run the model once; returns the nice value of the thread it ran on."""
    seen: list[int] = []
    rng = np.random.default_rng(0)
    pcm = (rng.standard_normal(16000) * 3000).astype(np.int16).tobytes()
    analyzer.set_sample_rate(16000)
    for i in range(0, len(pcm), 640):
        analyzer.append_audio(pcm[i : i + 640], is_speech=True)
    original = analyzer.new_model_thread

    def recording_thread():  # type: ignore[no-untyped-def]
        executor = original()
        executor.submit(lambda: seen.append(thread_nice())).result()
        return executor

    analyzer.new_model_thread = recording_thread  # type: ignore[method-assign]
    state, _ = await analyzer.analyze_end_of_turn()
    assert state in (EndOfTurnState.COMPLETE, EndOfTurnState.INCOMPLETE)
    return seen


async def test_the_model_runs_below_the_callers_priority_and_again_after_cleanup() -> None:
    base = thread_nice()
    if base + 10 > 19:
        pytest.skip("this process already runs at the lowest priorities")
    analyzer = SharedSmartTurnAnalyzer(session=load_smart_turn_session(), nice=10)
    assert await _analyse_a_second_of_speech(analyzer) == [base + 10]
    # Pipecat drops the thread in cleanup (strategies re-applied) and starts another.
    await analyzer.cleanup()
    assert await _analyse_a_second_of_speech(analyzer) == [base + 10]
    await analyzer.cleanup()


async def test_nice_zero_keeps_the_callers_priority() -> None:
    analyzer = SharedSmartTurnAnalyzer(session=load_smart_turn_session(), nice=0)
    assert await _analyse_a_second_of_speech(analyzer) == [thread_nice()]
    await analyzer.cleanup()


def test_the_pipeline_gives_smart_turn_the_configured_priority(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made: list[SharedSmartTurnAnalyzer] = []

    class Recorded(SharedSmartTurnAnalyzer):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            made.append(self)

    class Models:
        smart_turn_session = load_smart_turn_session()

    monkeypatch.setattr(pipeline, "SharedSmartTurnAnalyzer", Recorded)
    settings = Settings.model_validate({"turn": {"smart_turn_nice": 7}})
    pipeline._turn_stop_strategies(settings, Models(), None)  # type: ignore[arg-type]
    assert len(made) == 1
    ran_at = made[0].new_model_thread().submit(thread_nice).result()
    assert ran_at == min(19, thread_nice() + 7)
