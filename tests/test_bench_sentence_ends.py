"""`voicebot bench sentence-ends` on the bundled SmolLM2: the threshold's ground."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from voicebot.bench.sentence_ends import FINISHED, GOING_ON, run_sentence_ends_bench
from voicebot.config import Settings
from voicebot.tools import voice_set


def _words(text: str) -> str:
    return " ".join(re.findall(r"[a-z']+", text.lower()))


def test_the_sentences_are_not_the_benchmarks_voice_set() -> None:
    """The threshold is set on these sentences; the turn-latency figures come from the
    voice set, so none of them may start like one of its utterances."""
    spoken = [_words(u.text) for u, _ in voice_set.utterances()]
    for text in FINISHED + GOING_ON:
        assert not any(s.startswith(_words(text)) for s in spoken), text


@pytest.mark.slow
def test_paused_words_stay_below_the_threshold_and_most_finished_ones_reach_it(
    settings: Settings, tmp_path: Path
) -> None:
    output = tmp_path / "sentence-ends.json"
    report = run_sentence_ends_bench(settings, output)
    assert json.loads(output.read_text()) == report
    summary = report["summary"]
    assert summary["going_on"] == len(GOING_ON) and summary["finished"] == len(FINISHED)
    # A paused sentence judged finished would be cut off at the shorter floor.
    assert summary["going_on_at_threshold"] == 0, summary["going_on_highest"]
    # Measured: 27 of 30; a finished one below it only waits the usual floor.
    assert summary["finished_at_threshold"] >= 24
    # The sure tier: none that goes on (the highest is a tenth of it); measured: 23 of 30.
    assert summary["going_on_at_sure_threshold"] == 0
    assert summary["finished_at_sure_threshold"] >= 18
