"""`voicebot bench loop`: voicebot beside a hand-written loop and a stock Pipecat bot.

Each system runs as its own server process on a free loopback port, one after another
(or, with `interleave`, all up at once, each utterance spoken to each in a rotating
order), and hears the same utterances through the same client (`run_turn`, as `bench
turn`).
Per system: start-to-warm (process start to its first session's `ready`), turn latency
(median, p90), CPU seconds per turn and RSS (peak, final) of the server's process tree.
One start is one sample of a figure that varies by ±0.5 s on a small machine: `starts`
adds cold starts, systems taking turns, and reports their median.
The loop and the stock bot live in the repository's tests/benchmark/ (not in the
package); they are given the model files and settings voicebot resolved, so all three
run the same Whisper, LLM, Piper voice and VAD stop window.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import websockets

from voicebot.bench.report import report_header, write_report
from voicebot.bench.systems import (
    SYSTEMS,
    ProcessTree,
    RunningSystem,
    base_system,
    describe,
    loop_env,
    repo_root,
    variant_env,
)
from voicebot.bench.turn import Spoken, spoken_set, summarise, turn_record
from voicebot.config import Settings
from voicebot.errors import InputError
from voicebot.processors.reply_limit import ends_mid_sentence
from voicebot.tools.client import run_turn


@dataclass(frozen=True)
class Options:
    turn_timeout_s: float = 60.0
    start_timeout_s: float = 300.0
    warmup_turns: int = 1
    # Cold starts per system besides the one its turns are measured on.
    starts: int = 0
    # All systems up at once, each utterance spoken to each in a rotating order, instead
    # of one system after another (measure_systems).
    interleave: bool = False


async def _speak(url: str, spoken: Spoken, timeout_s: float) -> dict[str, Any]:
    """One turn; a turn with no reply in time is recorded as unanswered, never waited on."""
    name, pcm, meta = spoken
    try:
        result = await asyncio.wait_for(
            run_turn(url, pcm, reply_timeout_s=timeout_s), timeout_s + 30
        )
    except (TimeoutError, OSError, RuntimeError, websockets.WebSocketException) as e:
        return {"name": name, **meta, "answered": False, "error": f"{type(e).__name__}: {e}"}
    record = {"name": name, **meta, **turn_record(result, max_silence_secs=0.0)}
    del record["waited_for_max_silence"]
    # A cut-off: the bot began answering before the person had finished (a reply into the
    # pause of "book a table for | four people"); its latency times that early reply.
    record["cut_off"] = record["cut_off"] or result.spoke_before_end
    record["answered"] = result.turn_latency_ms is not None
    return record


async def _sample_rss(tree: ProcessTree, peak: list[int]) -> None:
    while True:
        peak[0] = max(peak[0], tree.rss_bytes())
        await asyncio.sleep(0.25)


# After each turn the server finishes with the session (its CPU is still counted) before
# the next turn, to it or to another system.
SETTLE_S = 1.0


class SystemUnderTest:
    """One system's server, started once and spoken to a turn at a time."""

    def __init__(self, system: str, settings: Settings, config_file: Path | None) -> None:
        self.system = system
        self._settings = settings
        self._config_file = config_file
        self._running: RunningSystem | None = None
        self._sampler: asyncio.Task[None] | None = None
        self._peak = [0]
        self._warm_s = self._warm_cpu_s = self._cpu_s = 0.0
        self._final_rss = 0
        self.turns: list[dict[str, Any]] = []
        self.error: dict[str, Any] | None = None

    async def start(self, options: Options, warmup: list[Spoken]) -> None:
        """Start the server, wait until it is warm, and speak the unmeasured turns."""
        running = self._running = RunningSystem(self.system, self._settings, self._config_file)
        self._sampler = asyncio.create_task(_sample_rss(running.tree, self._peak))
        try:
            self._warm_s = await running.wait_warm(options.start_timeout_s)
            self._warm_cpu_s = running.tree.cpu_s()
            for item in warmup:
                await _speak(running.ws_url, item, options.turn_timeout_s)
        except (TimeoutError, RuntimeError, OSError, websockets.WebSocketException) as e:
            self.error = {
                "description": describe(self.system),
                "error": f"{type(e).__name__}: {e}",
                "log_tail": running.log_tail(),
            }
            await self.stop()

    async def speak(self, item: Spoken, options: Options) -> None:
        """One measured turn; the server's CPU is counted until it has settled after it."""
        assert self._running is not None and self.error is None
        before = self._running.tree.cpu_s()
        turn = await _speak(self._running.ws_url, item, options.turn_timeout_s)
        await asyncio.sleep(SETTLE_S)
        turn["cpu_s"] = round(self._running.tree.cpu_s() - before, 3)
        self._cpu_s += turn["cpu_s"]
        self.turns.append(turn)
        print(json.dumps({"system": self.system, **turn}), flush=True)

    async def stop(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            self._sampler = None
        if self._running is not None:
            running, self._running = self._running, None
            self._final_rss = running.tree.rss_bytes()
            self._peak[0] = max(self._peak[0], self._final_rss)
            await asyncio.to_thread(running.stop)

    def result(self) -> dict[str, Any]:
        if self.error is not None:
            return self.error
        turns = self.turns
        answered = [t for t in turns if t["answered"]]
        # Latency is reported over the turns answered after the person finished.
        timed = [t for t in answered if not t["cut_off"]]
        return {
            "description": describe(self.system),
            "start_to_warm_s": round(self._warm_s, 2),
            "cpu_s_to_warm": round(self._warm_cpu_s, 2),
            "turn_latency_ms": summarise(timed)["turn_latency_ms"],
            "cpu_s_per_turn": round(self._cpu_s / max(1, len(turns)), 2),
            # CPU per turn includes writing and speaking the whole reply: systems whose
            # replies run longer (or that answer a pause's first half too) spend more on it.
            "reply_audio_s_per_turn": round(
                sum(t.get("reply_audio_s") or 0.0 for t in turns) / max(1, len(turns)), 2
            ),
            "cpu_s_fit": cpu_fit(turns),
            "rss_mib": {
                "peak": round(self._peak[0] / 2**20, 1),
                "final": round(self._final_rss / 2**20, 1),
            },
            "turns": len(turns),
            "answered": len(answered),
            "unanswered": len(turns) - len(answered),
            "cut_off": sum(bool(t.get("cut_off")) for t in turns),
            # Spoken replies that stop in mid-sentence (a reply cut at the token limit).
            "ended_mid_sentence": sum(ends_mid_sentence(t.get("reply") or "") for t in answered),
            # How many turns the latency figures are over: answered, and not cut off.
            "timed_turns": len(timed),
            "per_turn": turns,
        }


async def measure_systems(
    systems: list[str],
    settings: Settings,
    spoken: list[Spoken],
    options: Options,
    config_file: Path | None = None,
) -> dict[str, dict[str, Any]]:
    """Speak every utterance to every system, one system after another: each starts,
    hears them all and stops before the next starts.

    On a 2 vCPU VM the system measured first was the slower (its Whisper ~50-60 ms
    slower), whichever it was. With `options.interleave` the systems start one after
    another and stay up, and each utterance is spoken to all of them in an order that
    rotates, so each goes first as often as the others (README_PIPECAT.md, "Latency and benchmarks":
    what it changed in two runs).
    """
    under_test = [SystemUnderTest(s, settings, config_file) for s in systems]
    warmup = spoken[: options.warmup_turns]
    try:
        if not options.interleave:
            for system in under_test:
                await system.start(options, warmup)
                if system.error is None:
                    for item in spoken:
                        await system.speak(item, options)
                await system.stop()
        else:
            for system in under_test:
                await system.start(options, warmup)
            up = [s for s in under_test if s.error is None]
            for i, item in enumerate(spoken):
                k = i % max(1, len(up))
                for system in up[k:] + up[:k]:
                    await system.speak(item, options)
    finally:
        for system in under_test:
            await system.stop()
    return {s.system: s.result() for s in under_test}


async def run_loop_bench(
    settings: Settings,
    output: Path,
    *,
    systems: list[str],
    voices: str = "unseen",
    half: str = "heldout",
    turns: int | None = None,
    options: Options | None = None,
    config_file: Path | None = None,
) -> int:
    """Measure the systems side by side on the same utterances; write one JSON report."""
    unknown = [s for s in systems if base_system(s) not in SYSTEMS]
    if unknown or not systems:
        raise InputError(f"unknown system(s) {unknown}; choose from {', '.join(SYSTEMS)}")
    if len(set(systems)) < len(systems):
        raise InputError(f"each system once, please: {', '.join(systems)}")
    for system in systems:
        variant_env(system)  # a bad setting is refused before anything starts
    options = options or Options()
    # A terminated benchmark still stops the servers it started (measure_systems' finally).
    task = asyncio.current_task()
    if task is not None:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    if any(base_system(s) != "voicebot" for s in systems):
        loop_env(settings)  # fails early, before anything starts, on a mismatched config
        repo_root()
    spoken = await asyncio.to_thread(spoken_set, settings, voices, half, turns or 10)
    if turns:
        spoken = spoken[:turns]
    results = await measure_systems(systems, settings, spoken, options, config_file)
    equal_reply_cpu(results)
    if options.starts:
        started = [s for s in systems if "error" not in results[s]]
        more = await cold_starts(started, settings, options, config_file)
        for system in started:
            results[system]["cold_starts"] = _starts_summary(results[system], more[system])
    report = {
        **report_header("loop"),
        "voices": voices,
        "half": half if voices == "unseen" else None,
        "utterances": [name for name, _, _ in spoken],
        "warmup_turns": options.warmup_turns,
        "extra_starts": options.starts,
        "turn_timeout_s": options.turn_timeout_s,
        "models": {k: v for k, v in loop_env(settings).items() if k != "SYSTEM_PROMPT"},
        "systems": results,
    }
    await asyncio.to_thread(write_report, output, report)
    print(table(results))
    return 0 if all("error" not in r for r in results.values()) else 1


def cpu_fit(turns: list[dict[str, Any]]) -> dict[str, float] | None:
    """CPU seconds per turn as `per_turn + per_reply_s * reply seconds`, least squares.

    Replies are sampled (`llm.temperature`), and a system that answers the first half of
    a paused utterance speaks twice: reply lengths differ between systems, and CPU per
    turn with them. The intercept is what a turn costs besides its reply (turn detection,
    STT, the reply's start); the slope is what each second of reply costs (LLM tokens,
    synthesis, streaming the audio out, listening meanwhile). None with fewer than three
    turns or replies all of one length.
    """
    points = [(t.get("reply_audio_s") or 0.0, t["cpu_s"]) for t in turns if "cpu_s" in t]
    if len(points) < 3 or len({x for x, _ in points}) < 2:
        return None
    slope, intercept = statistics.linear_regression(*zip(*points, strict=True))
    return {"per_turn": round(intercept, 3), "per_reply_s": round(slope, 4)}


def equal_reply_cpu(results: dict[str, dict[str, Any]]) -> float | None:
    """Add each system's CPU per turn at the same reply length (`cpu_s_per_turn_at_reply`).

    The length is the mean over every system's turns, so systems compare at one length;
    returns it (None where no system has a fit).
    """
    fitted = [r for r in results.values() if r.get("cpu_s_fit")]
    replies = [t.get("reply_audio_s") or 0.0 for r in fitted for t in r["per_turn"]]
    if not replies:
        return None
    length = round(statistics.fmean(replies), 2)
    for r in fitted:
        fit = r["cpu_s_fit"]
        r["cpu_s_per_turn_at_reply"] = {
            "reply_s": length,
            "cpu_s": round(fit["per_turn"] + fit["per_reply_s"] * length, 2),
        }
    return length


async def cold_starts(
    systems: list[str], settings: Settings, options: Options, config_file: Path | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Start each system `options.starts` times and stop it once warm.

    The order rotates each round, so no system always starts right after the same other
    one has exited (page cache, CPU frequency). Per start: seconds and CPU seconds to warm,
    or the error.
    """
    starts: dict[str, list[dict[str, Any]]] = {system: [] for system in systems}
    for n in range(options.starts):
        k = n % max(1, len(systems))
        for system in systems[k:] + systems[:k]:
            running = RunningSystem(system, settings, config_file)
            try:
                warm_s = await running.wait_warm(options.start_timeout_s)
                starts[system].append(
                    {"start_to_warm_s": round(warm_s, 2), "cpu_s": round(running.tree.cpu_s(), 2)}
                )
            except (TimeoutError, RuntimeError, OSError, websockets.WebSocketException) as e:
                starts[system].append({"error": f"{type(e).__name__}: {e}"})
            finally:
                await asyncio.to_thread(running.stop)
    return starts


def _starts_summary(measured: dict[str, Any], more: list[dict[str, Any]]) -> dict[str, Any]:
    """Every start of a system (the measured one first) and the medians over those that warmed."""
    first = {"start_to_warm_s": measured["start_to_warm_s"], "cpu_s": measured["cpu_s_to_warm"]}
    starts = [first, *more]
    warmed = [s for s in starts if "error" not in s]
    return {
        "starts": starts,
        "failed": len(starts) - len(warmed),
        "median_start_to_warm_s": round(statistics.median(s["start_to_warm_s"] for s in warmed), 2),
        "median_cpu_s": round(statistics.median(s["cpu_s"] for s in warmed), 2),
    }


def table(results: dict[str, dict[str, Any]]) -> str:
    """The systems side by side, as plain text."""
    header = ["system", "median ms", "p90 ms", "CPU s/turn", "reply s/turn"]
    header += ["CPU s/turn, equal reply", "peak MiB", "final MiB", "warm s"]
    rows: list[list[str]] = [[*header, "answered", "cut off", "mid-sentence end"]]
    for system, r in results.items():
        if "error" in r:
            rows.append([system, "error: " + r["error"][:60], *[""] * 10])
            continue
        latency = r["turn_latency_ms"]
        rows.append(
            [
                system,
                _fmt(latency["median"]),
                _fmt(latency["p90"]),
                f"{r['cpu_s_per_turn']:.2f}",
                f"{r['reply_audio_s_per_turn']:.1f}",
                _equal_reply(r),
                f"{r['rss_mib']['peak']:.0f}",
                f"{r['rss_mib']['final']:.0f}",
                f"{_warm_s(r):.1f}",
                f"{r['answered']}/{r['turns']}",
                str(r["cut_off"]),
                str(r.get("ended_mid_sentence", "-")),
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows
    )


def _warm_s(result: dict[str, Any]) -> float:
    """The median start-to-warm where more starts were measured, else the one start."""
    starts = result.get("cold_starts")
    return float(starts["median_start_to_warm_s"] if starts else result["start_to_warm_s"])


def _equal_reply(result: dict[str, Any]) -> str:
    at = result.get("cpu_s_per_turn_at_reply")
    return f"{at['cpu_s']:.2f} at {at['reply_s']:.1f} s" if at else "-"


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"
