"""`voicebot bench loop`: the hand-written loop and the stock Pipecat bot really answer, and
the comparison writes every field for every system (figures are never asserted)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.benchmark.classic_loop import split_reply
from tests.helpers import VOICEBOT, hear, tweak, tweak_whisper
from voicebot.bench import loop
from voicebot.bench.loop import Options, measure_systems, run_loop_bench, table
from voicebot.bench.systems import ProcessTree, RunningSystem, loop_env
from voicebot.config import Settings
from voicebot.errors import InputError
from voicebot.models import SharedModels
from voicebot.processors.reply_limit import ends_mid_sentence
from voicebot.tools.client import run_turn


def test_the_loop_speaks_the_first_clause_early_then_whole_sentences() -> None:
    tokens = iter(["When it", " is raining,", " wear a coat.", " Take an", " umbrella", " too."])
    assert list(split_reply(tokens, 4)) == [
        "When it is raining,",
        "wear a coat.",
        "Take an umbrella too.",
    ]
    # A short opening clause waits for its sentence; "1,000" is a number, not a clause.
    assert list(split_reply(iter(["Yes, about 1,000 of them. Ok"]), 4)) == [
        "Yes, about 1,000 of them.",
        "Ok",
    ]


def test_a_configuration_the_loop_cannot_mirror_is_refused_before_anything_starts(
    tmp_path: Path,
) -> None:
    settings = Settings(tts={"provider": "edge"})
    with pytest.raises(InputError, match="tts=edge"):
        loop_env(settings)
    with pytest.raises(InputError, match="unknown system"):
        asyncio.run(run_loop_bench(Settings(), tmp_path / "x.json", systems=["vllm"]))


def test_the_loop_is_given_the_threads_voicebot_resolved(settings: Settings) -> None:
    llm = settings.llm.model_copy(
        update={"llama_cpp": settings.llm.llama_cpp.model_copy(update={"n_threads": 3})}
    )
    env = loop_env(tweak_whisper(settings.model_copy(update={"llm": llm}), cpu_threads=2))
    assert (env["LLM_THREADS"], env["CPU_THREADS"]) == ("3", "2")
    # The same sampling as voicebot's.
    env = loop_env(tweak(settings, llm={"temperature": 0.5, "repeat_penalty": 1.2}))
    assert (env["LLM_TEMPERATURE"], env["LLM_REPEAT_PENALTY"]) == ("0.5", "1.2")


def test_the_process_tree_counts_this_process() -> None:
    import os

    tree = ProcessTree(os.getpid())
    assert tree.rss_bytes() > 10 * 2**20
    assert tree.cpu_s() > 0


def test_a_system_that_failed_is_shown_as_failed_in_the_table() -> None:
    text = table({"stock": {"error": "TimeoutError: not healthy within 300 s"}})
    assert "stock" in text and "error: TimeoutError" in text


def test_cpu_per_turn_is_compared_at_one_reply_length() -> None:
    """Two systems with the same costs but different reply lengths compare as equal."""

    def turns(replies: list[float], per_turn: float, per_reply_s: float) -> list[dict[str, Any]]:
        return [{"reply_audio_s": r, "cpu_s": per_turn + per_reply_s * r} for r in replies]

    results: dict[str, dict[str, Any]] = {}
    for system, replies in (("voicebot", [2.0, 4.0, 6.0]), ("loop", [8.0, 10.0, 12.0, None])):
        per_turn = turns([r or 0.0 for r in replies], 1.5, 0.1)
        results[system] = {"per_turn": per_turn, "cpu_s_fit": loop.cpu_fit(per_turn)}
    assert results["voicebot"]["cpu_s_fit"] == {"per_turn": 1.5, "per_reply_s": 0.1}
    # The unanswered turn (no reply) counts at 0 s of reply.
    assert results["loop"]["cpu_s_fit"] == {"per_turn": 1.5, "per_reply_s": 0.1}
    length = loop.equal_reply_cpu(results)
    assert length == pytest.approx((12.0 + 30.0) / 7, abs=0.01)
    at = {s: r["cpu_s_per_turn_at_reply"] for s, r in results.items()}
    expected = {"reply_s": length, "cpu_s": round(1.5 + 0.1 * length, 2)}
    assert at["voicebot"] == at["loop"] == expected
    # Too few turns, or replies all of one length: no fit, and no equal-length figure.
    assert loop.cpu_fit(turns([3.0, 3.0, 3.0], 1.0, 0.1)) is None
    assert loop.cpu_fit(turns([1.0, 2.0], 1.0, 0.1)) is None
    assert loop.equal_reply_cpu({"stock": {"error": "no start"}}) is None
    shown = {"turn_latency_ms": {"median": 800.0, "p90": 900.0}, "cpu_s_per_turn": 2.0}
    shown |= {"reply_audio_s_per_turn": 4.0, "rss_mib": {"peak": 900, "final": 800}}
    shown |= {"start_to_warm_s": 2.0, "answered": 3, "turns": 3, "cut_off": 0}
    text = table({"voicebot": results["voicebot"] | shown | {"ended_mid_sentence": 2}})
    assert "CPU s/turn, equal reply" in text and "2.10 at 6.0 s" in text
    assert text.splitlines()[0].endswith("mid-sentence end")
    assert text.splitlines()[1].rstrip().endswith("2")


async def test_interleaved_systems_hear_each_utterance_in_a_rotating_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Interleaved: every system hears every utterance, each goes first as often as the
    others, and a system that did not start hears none and is reported as failed."""
    heard: list[tuple[str, str]] = []
    stopped: list[str] = []

    async def start(self: loop.SystemUnderTest, options: Options, warmup: list[Any]) -> None:
        if self.system == "stock":
            self.error = {"error": "TimeoutError: not healthy within 300 s"}

    async def speak(self: loop.SystemUnderTest, item: Any, options: Options) -> None:
        heard.append((item[0], self.system))

    async def stop(self: loop.SystemUnderTest) -> None:
        stopped.append(self.system)

    monkeypatch.setattr(loop.SystemUnderTest, "start", start)
    monkeypatch.setattr(loop.SystemUnderTest, "speak", speak)
    monkeypatch.setattr(loop.SystemUnderTest, "stop", stop)
    spoken = [(f"u{i}", np.zeros(1, np.int16), {}) for i in range(4)]
    results = await measure_systems(
        ["voicebot", "stock", "loop"], Settings(), spoken, Options(warmup_turns=0, interleave=True)
    )
    assert heard == [
        ("u0", "voicebot"), ("u0", "loop"),
        ("u1", "loop"), ("u1", "voicebot"),
        ("u2", "voicebot"), ("u2", "loop"),
        ("u3", "loop"), ("u3", "voicebot"),
    ]  # fmt: skip
    assert results["stock"] == {"error": "TimeoutError: not healthy within 300 s"}
    assert results["voicebot"]["turns"] == 0 and sorted(stopped) == ["loop", "stock", "voicebot"]
    # The default: one system after another, each stopped before the next starts.
    heard.clear()
    stopped.clear()
    await measure_systems(["loop", "voicebot"], Settings(), spoken[:2], Options(warmup_turns=0))
    assert heard == [("u0", "loop"), ("u1", "loop"), ("u0", "voicebot"), ("u1", "voicebot")]


@pytest.fixture
async def running(request: pytest.FixtureRequest, settings: Settings) -> AsyncIterator[str]:
    system = RunningSystem(request.param, settings, None)
    try:
        await system.wait_warm(300)
        yield system.ws_url
    finally:
        await asyncio.to_thread(system.stop)


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


@pytest.mark.slow
@pytest.mark.parametrize("running", ["loop", "stock"], indirect=True)
async def test_the_compared_system_answers_a_spoken_question(
    running: str, question_pcm: dict[str, np.ndarray], models: SharedModels
) -> None:
    result = await run_turn(running, question_pcm["capital"], reply_timeout_s=120)
    assert {"capital", "france"} <= _words(result.transcript)
    assert result.reply and result.turn_latency_ms is not None
    # What the client received is the reply, spoken: Whisper hears its words in the audio,
    # at least half of them (tiny.en heard stock Piper's "Paris, France." as "Harris,
    # France." in a CI run; a two-word reply then allowed no slip at all).
    heard = await asyncio.to_thread(hear, models, result.reply_audio, result.sample_rate)
    reply_words = _words(result.reply)
    assert len(_words(heard) & reply_words) >= max(1, len(reply_words) // 2), (heard, result.reply)
    kinds = [e["type"] for e in result.events]
    assert kinds.index("bot_started_speaking") < kinds.index("bot_stopped_speaking")


@pytest.mark.slow
def test_bench_loop_writes_every_field_for_each_system(tmp_path: Path) -> None:
    import subprocess

    output = tmp_path / "loop.json"
    options = ["--voices", "samples", "--systems", "loop,voicebot", "--turns", "2", "--starts", "1"]
    done = subprocess.run(
        [VOICEBOT, "bench", "loop", *options, "--warmup", "0", "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads(output.read_text())
    assert report["benchmark"] == "loop" and report["machine"]["cpu_count"]
    assert list(report["systems"]) == ["loop", "voicebot"]
    for system in report["systems"].values():
        assert system["turns"] == 2 and system["answered"] + system["unanswered"] == 2
        assert 0 <= system["cut_off"] <= 2 and len(system["per_turn"]) == 2
        mid_sentence = [ends_mid_sentence(t["reply"]) for t in system["per_turn"] if t["answered"]]
        assert system["ended_mid_sentence"] == sum(mid_sentence)
        assert set(system["turn_latency_ms"]) >= {"median", "p90"}
        assert system["cpu_s_per_turn"] > 0 and system["start_to_warm_s"] > 0
        per_turn_cpu = [turn["cpu_s"] for turn in system["per_turn"]]
        assert all(cpu > 0 for cpu in per_turn_cpu)
        assert system["cpu_s_per_turn"] == pytest.approx(sum(per_turn_cpu) / 2, abs=0.01)
        replies = sum(turn["reply_audio_s"] or 0 for turn in system["per_turn"])
        assert system["reply_audio_s_per_turn"] == pytest.approx(replies / 2, abs=0.01)
        assert system["rss_mib"]["peak"] >= system["rss_mib"]["final"] > 50
        # The measured start, then one more cold start each, both warmed.
        starts = system["cold_starts"]
        assert starts["starts"][0]["start_to_warm_s"] == system["start_to_warm_s"]
        assert len(starts["starts"]) == 2 and starts["failed"] == 0
        assert all(s["start_to_warm_s"] > 0 and s["cpu_s"] > 0 for s in starts["starts"])
        assert starts["median_start_to_warm_s"] > 0 and starts["median_cpu_s"] > 0
    assert "median ms" in done.stdout and "voicebot" in done.stdout


def test_a_voicebot_variant_changes_settings_through_the_environment() -> None:
    from voicebot.bench.systems import base_system, describe, variant_env

    system = "voicebot@turn.speculative=true@llm.llama_cpp.n_threads=2"
    assert base_system(system) == "voicebot"
    assert variant_env(system) == {
        "VOICEBOT_TURN__SPECULATIVE": "true",
        "VOICEBOT_LLM__LLAMA_CPP__N_THREADS": "2",
    }
    assert describe(system).endswith("with turn.speculative=true, llm.llama_cpp.n_threads=2")
    assert variant_env("voicebot") == {}


@pytest.mark.parametrize(
    ("system", "says"),
    [
        ("voicebot@turn.speculativ=true", "turn.speculativ"),
        ("voicebot@turn.speculative=maybe", "turn.speculative"),
        ("voicebot@speculative", "section.key=value"),
        ("loop@turn.speculative=true", "only voicebot"),
    ],
)
def test_a_bad_variant_is_refused_before_anything_starts(
    tmp_path: Path, system: str, says: str
) -> None:
    with pytest.raises(InputError, match=re.escape(says)):
        asyncio.run(run_loop_bench(Settings(), tmp_path / "x.json", systems=["voicebot", system]))
    assert not (tmp_path / "x.json").exists()
