"""`voicebot bench reliability {fuzz,soak,long}`: hostile clients, many sessions, long sessions.

fuzz: random hostile messages over many /ws sessions; every one must be answered by an
error event (or a pong) or end its connection with a close code. soak: many sessions, half
aborting mid-turn without a close frame; open files and threads must come back. long: one
session with a turn every few seconds; RSS slope per minute. Throughout, a canary session
asks a real question and must be answered. Against a server started in this process
(127.0.0.1), its ERROR log lines and tracebacks are counted and its resources measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import re
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import psutil
import websockets
from loguru import logger
from websockets.exceptions import ConnectionClosed

from voicebot.bench.report import report_header, write_report
from voicebot.tools.client import (
    CHUNK_MS,
    _Receiver,
    _send_paced,
    _send_silence_until_done,
    load_pcm16k,
    run_turn,
)
from voicebot.tools.local_server import LocalServer, without_session_limits
from voicebot.tools.samples import synthesise_questions

if TYPE_CHECKING:
    from loguru import Message

    from voicebot.config import Settings
    from voicebot.models import SharedModels

# A hostile message must be answered within this long (an error event or a close).
ANSWER_TIMEOUT_S = 10.0
# A spoken turn must end within this long: a hang detector, not a latency target (on two
# shared cores under heavy load a normal turn has taken over 60 s).
TURN_TIMEOUT_S = 180.0


@dataclass
class LogWatch:
    """Counts ERROR-or-worse log records and tracebacks (loguru and stdlib logging)."""

    errors: int = 0
    tracebacks: int = 0
    samples: list[str] = field(default_factory=list)

    def _count(self, text: str, traceback: bool) -> None:
        self.errors += 1
        self.tracebacks += int(traceback or "Traceback (most recent call last)" in text)
        if len(self.samples) < 10:
            self.samples.append(text[:500])

    def _loguru(self, message: Message) -> None:
        record = message.record
        self._count(f"{record['name']}: {record['message']}", record["exception"] is not None)

    @contextlib.contextmanager
    def watching(self) -> Any:
        sink = logger.add(self._loguru, level="ERROR", format="{message}")
        handler = _Handler(self)
        loggers = [logging.getLogger(), logging.getLogger("uvicorn")]
        for each in loggers:
            each.addHandler(handler)
        try:
            yield self
        finally:
            logger.remove(sink)
            for each in loggers:
                each.removeHandler(handler)


class _Handler(logging.Handler):
    def __init__(self, watch: LogWatch) -> None:
        super().__init__(level=logging.ERROR)
        self._watch = watch

    def emit(self, record: logging.LogRecord) -> None:
        # exc_info may be False (asyncio passes it through): only a real one is a traceback.
        self._watch._count(f"{record.name}: {record.getMessage()}", bool(record.exc_info))


def resources() -> dict[str, float]:
    """This process's RSS (MiB), threads and open file descriptors."""
    process = psutil.Process()
    return {
        "rss_mib": round(process.memory_info().rss / 2**20, 1),
        "threads": process.num_threads(),
        "fds": process.num_fds(),
    }


@dataclass
class Canary:
    """A well-behaved caller asking a real question again and again while the load runs."""

    ws_url: str
    pcm: np.ndarray
    answered: int = 0
    failed: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)

    async def ask(self) -> bool:
        try:
            result = await run_turn(self.ws_url, self.pcm, reply_timeout_s=TURN_TIMEOUT_S)
        except (TimeoutError, OSError, ConnectionClosed) as e:
            self.failed.append(f"{type(e).__name__}: {e}")
            return False
        if result.reply_audio_s < 0.3:
            self.failed.append(f"no reply audio (reply {result.reply!r})")
            return False
        self.answered += 1
        if result.turn_latency_ms is not None:
            self.latencies_ms.append(result.turn_latency_ms)
        return True

    async def keep_asking(self, stop: asyncio.Event, gap_s: float = 1.0) -> None:
        while not stop.is_set():
            await self.ask()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), gap_s)

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.latencies_ms)
        return {
            "answered": self.answered,
            "failed": len(self.failed),
            "failures": self.failed[:5],
            "turn_latency_ms_median": round(ordered[len(ordered) // 2]) if ordered else None,
            "turn_latency_ms_max": round(ordered[-1]) if ordered else None,
        }


# --- fuzz -------------------------------------------------------------------------------


def _random_json(rng: random.Random, depth: int = 0) -> Any:
    kinds = ["int", "float", "str", "bool", "null"] + (["list", "dict"] if depth < 4 else [])
    kind = rng.choice(kinds)
    if kind == "int":
        return rng.randint(-(2**70), 2**70)
    if kind == "float":
        return rng.uniform(-1e308, 1e308)
    if kind == "str":
        return "".join(chr(rng.randint(32, 0x2FFF)) for _ in range(rng.randint(0, 20)))
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "null":
        return None
    if kind == "list":
        return [_random_json(rng, depth + 1) for _ in range(rng.randint(0, 5))]
    keys = ["type", "ping", "audio", "sample_rate", "text", "x"]
    return {rng.choice(keys): _random_json(rng, depth + 1) for _ in range(rng.randint(0, 5))}


WRONG_TYPES: tuple[Any, ...] = (
    5,
    None,
    ["ping"],
    {"ping": True},
    "PING",
    "",
    "ping ",
    True,
    1.5,
)


def hostile_message(rng: random.Random, limit: int) -> tuple[str, str | bytes, bool]:
    """(kind, message, sent as a text frame). Every kind breaks the protocol somehow,
    except `ping`, a valid control message mixed in (answered by a pong)."""
    roll = rng.random()
    if roll < 0.01:  # bigger than server.max_message_bytes: a 1009 close
        return "oversized", bytes(limit + 2 + 2 * rng.randint(0, 512)), False
    if roll < 0.02:  # not UTF-8 in a text frame: a 1007 close
        return "non_utf8_text", b"\xff\xfe" + rng.randbytes(rng.randint(0, 64)) + b"\xc3", True
    if roll < 0.20:
        return "odd_bytes", rng.randbytes(2 * rng.randint(0, 2000) + 1), False
    if roll < 0.23:
        return "empty_bytes", b"", False
    if roll < 0.35:
        text = "".join(chr(rng.randint(1, 0xD7FF)) for _ in range(rng.randint(0, 200)))
        return "random_text", text, True
    if roll < 0.60:
        return "random_json", json.dumps(_random_json(rng)), True
    if roll < 0.65:
        depth = rng.choice((100, 1000, 10_000, 50_000))
        opener, closer = rng.choice((("[", "]"), ('{"a":', "}")))
        return "deep_json", opener * depth + "1" + closer * depth, True
    if roll < 0.70:
        digits = "9" * rng.randint(4301, 60_000)  # past Python's int digit limit (4300)
        return "huge_int", f'{{"type": "ping", "n": {digits}}}', True
    if roll < 0.90:
        message = {"type": rng.choice(WRONG_TYPES)}
        if rng.random() < 0.5:
            message = {"type": "ping", rng.choice(("id", "type2", "audio")): _random_json(rng)}
        return "wrong_types", json.dumps(message), True
    return "ping", json.dumps({"type": "ping"}), True


@dataclass
class FuzzTally:
    sent: int = 0
    connections: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    error_codes: Counter[str] = field(default_factory=Counter)
    close_codes: Counter[str] = field(default_factory=Counter)
    pongs: int = 0
    # Failures: a message with no answer, a close with no code, anything unexpected.
    unanswered: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "messages": self.sent,
            "connections": self.connections,
            "by_kind": dict(self.by_kind),
            "error_codes": dict(self.error_codes),
            "close_codes": dict(self.close_codes),
            "pongs": self.pongs,
            "unanswered": len(self.unanswered),
            "unanswered_examples": self.unanswered[:10],
        }


async def _fuzz_session(
    ws_url: str, count: int, rng: random.Random, limit: int, tally: FuzzTally
) -> None:
    """Send `count` hostile messages, reconnecting whenever the server closes."""
    left = count
    while left > 0:
        tally.connections += 1
        async with websockets.connect(ws_url, max_size=None, open_timeout=30) as ws:
            await asyncio.wait_for(ws.recv(), 30)  # ready
            while left > 0:
                kind, message, text = hostile_message(rng, limit)
                left -= 1
                tally.sent += 1
                tally.by_kind[kind] += 1
                if not await _answered(ws, kind, message, text, tally):
                    break  # closed: the next message goes on a new connection


async def _answered(ws: Any, kind: str, message: str | bytes, text: bool, tally: FuzzTally) -> bool:
    """Send one message and wait for its answer; False when the connection closed."""
    try:
        if isinstance(message, bytes) and text:
            await ws.send(message, text=True)  # a raw text frame that is not UTF-8
        else:
            await ws.send(message)
        while True:
            reply = await asyncio.wait_for(ws.recv(), ANSWER_TIMEOUT_S)
            if isinstance(reply, str):
                event = json.loads(reply)
                if event.get("type") == "error":
                    tally.error_codes[event.get("code", "?")] += 1
                    return True
                if event.get("type") == "pong":
                    tally.pongs += 1
                    return True
    except TimeoutError:
        tally.unanswered.append(f"{kind}: no answer within {ANSWER_TIMEOUT_S:g} s")
        return True
    except ConnectionClosed as e:
        close = e.rcvd
        if close is None or not close.reason:
            tally.unanswered.append(f"{kind}: connection closed without a code and reason")
            tally.close_codes["none" if close is None else str(close.code)] += 1
        else:
            # Sizes in reasons vary with each message: keep the keys few.
            tally.close_codes[f"{close.code} {re.sub(r'[0-9]+', 'N', close.reason)}"] += 1
        return False


async def fuzz(
    ws_url: str, *, messages: int, sessions: int, limit: int, seed: int = 1, concurrency: int = 8
) -> dict[str, Any]:
    tally = FuzzTally()
    per_session = [
        messages // sessions + (1 if i < messages % sessions else 0) for i in range(sessions)
    ]
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with gate:
            await _fuzz_session(
                ws_url, per_session[i], random.Random(seed * 100_003 + i), limit, tally
            )

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(sessions)))
    return {
        **tally.summary(),
        "sessions": sessions,
        "elapsed_s": round(time.perf_counter() - started, 1),
    }


# --- soak -------------------------------------------------------------------------------


async def _soak_session(ws_url: str, pcm: np.ndarray, abort: bool) -> str:
    """One caller: a question then a TCP abort mid-turn, or a ping and a clean close."""
    async with websockets.connect(ws_url, max_size=None, open_timeout=30) as ws:
        await asyncio.wait_for(ws.recv(), 30)  # ready
        if not abort:
            await ws.send(json.dumps({"type": "ping"}))
            while json.loads(await asyncio.wait_for(_next_text(ws), 30)).get("type") != "pong":
                pass
            return "closed"
        chunk = 16000 * CHUNK_MS // 1000
        for offset in range(0, len(pcm), chunk):
            await ws.send(pcm[offset : offset + chunk].tobytes())
            await asyncio.sleep(CHUNK_MS / 4000)  # four times real time
        silence = bytes(chunk * 2)
        deadline = time.perf_counter() + 15
        seen = "no_turn"
        while time.perf_counter() < deadline:
            await ws.send(silence)
            with contextlib.suppress(TimeoutError):
                event = json.loads(await asyncio.wait_for(_next_text(ws), CHUNK_MS / 1000))
                if event.get("type") in ("transcript", "bot_text", "bot_started_speaking"):
                    if event.get("type") != "transcript" or event.get("final"):
                        seen = "mid_turn"
                        break
        ws.transport.abort()  # no close frame, as a dropped network would
        return f"aborted_{seen}"


async def _next_text(ws: Any) -> str:
    while True:
        message = await ws.recv()
        if isinstance(message, str):
            return message


async def soak(
    ws_url: str, *, sessions: int, pcm: np.ndarray, concurrency: int = 10
) -> dict[str, Any]:
    outcomes: Counter[str] = Counter()
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with gate:
            try:
                outcomes[await _soak_session(ws_url, pcm, abort=i % 2 == 0)] += 1
            except (OSError, TimeoutError, ConnectionClosed) as e:
                outcomes[f"failed: {type(e).__name__}"] += 1

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(sessions)))
    return {
        "sessions": sessions,
        "outcomes": dict(outcomes),
        "elapsed_s": round(time.perf_counter() - started, 1),
    }


async def settle(
    baseline: dict[str, float], tolerance: dict[str, float], wait_s: float = 30
) -> dict[str, Any]:
    """Wait (up to `wait_s`) for threads and fds to come back within tolerance of `baseline`."""
    started = time.perf_counter()
    now = resources()
    while time.perf_counter() - started < wait_s:
        now = resources()
        if all(now[k] <= baseline[k] + tolerance[k] for k in tolerance):
            break
        await asyncio.sleep(0.5)
    return {**now, "settled_after_s": round(time.perf_counter() - started, 1)}


# --- long -------------------------------------------------------------------------------


async def long_session(
    ws_url: str, *, minutes: float, pcm: np.ndarray, gap_s: float = 2.0
) -> dict[str, Any]:
    """One session with a turn every `gap_s` for `minutes`; RSS after each turn, slope fitted."""
    chunk = 16000 * CHUNK_MS // 1000
    samples: list[tuple[float, float]] = []
    answered = failed = 0
    started = time.perf_counter()
    async with websockets.connect(ws_url, max_size=None, open_timeout=30) as ws:
        await asyncio.wait_for(ws.recv(), 30)  # ready
        while time.perf_counter() - started < minutes * 60:
            receiver = _Receiver()
            task = asyncio.create_task(receiver.run(ws))
            try:
                await _send_paced(ws, pcm, chunk, len(pcm) - 1, receiver, True)
                await _send_silence_until_done(ws, chunk, receiver, TURN_TIMEOUT_S, 0.5)
                # A turn that ended with no reply audio failed as surely as one that hung.
                if receiver.audio:
                    answered += 1
                else:
                    failed += 1
            except TimeoutError:
                failed += 1
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            samples.append(((time.perf_counter() - started) / 60, resources()["rss_mib"]))
            await asyncio.sleep(gap_s)
    minutes_x = [m for m, _ in samples]
    rss = [r for _, r in samples]
    slope = float(np.polyfit(minutes_x, rss, 1)[0]) if len(samples) >= 3 else None
    # The first minutes include one-off growth (allocator arenas, the first long replies);
    # a leak shows as a slope that stays in the second half.
    later = samples[len(samples) // 2 :]
    later_slope = (
        float(np.polyfit([m for m, _ in later], [r for _, r in later], 1)[0])
        if len(later) >= 3
        else None
    )
    return {
        "minutes": round(minutes_x[-1], 2) if samples else 0,
        "turns": answered,
        "failed_turns": failed,
        "rss_mib_first": rss[0] if rss else None,
        "rss_mib_last": rss[-1] if rss else None,
        "rss_mib_per_minute": None if slope is None else round(slope, 2),
        "rss_mib_per_minute_second_half": None if later_slope is None else round(later_slope, 2),
        "rss_samples": [[round(m, 3), r] for m, r in samples],
    }


# --- the command ------------------------------------------------------------------------

# Open files and threads may sit this far above the baseline after a soak: asyncio's
# default executor (Whisper, TTS, llama.cpp run through it) keeps up to min(32, cores + 4)
# idle workers it started under load, and each holds no file.
THREAD_TOLERANCE = 8
FD_TOLERANCE = 4


@contextlib.asynccontextmanager
async def _server(
    settings: Settings, url: str | None, models: SharedModels | None
) -> AsyncIterator[str]:
    if url:
        yield url
        return
    # Hundreds of sessions from this one address are the point: lift the session limits.
    async with LocalServer(without_session_limits(settings), models=models) as server:
        yield server.ws_url


def _question(settings: Settings) -> np.ndarray:
    with tempfile.TemporaryDirectory() as folder:
        wav = synthesise_questions(Path(folder), settings)["capital"]
        return load_pcm16k(wav)


async def run_reliability(
    kind: str,
    settings: Settings,
    *,
    output: Path | None = None,
    url: str | None = None,
    messages: int = 10_000,
    sessions: int = 50,
    minutes: float = 10.0,
    models: SharedModels | None = None,
    seed: int = 1,
) -> dict[str, Any]:
    """Run one reliability benchmark; the report is returned (and written to `output`)."""
    pcm = await asyncio.to_thread(_question, settings)
    local = url is None
    watch = LogWatch()
    report: dict[str, Any] = {
        **report_header(f"reliability-{kind}"),
        "target": url or "in-process LocalServer on 127.0.0.1",
    }
    with watch.watching():
        async with _server(settings, url, models) as ws_url:
            canary = Canary(ws_url, pcm)
            await canary.ask()  # warms every stage before the baseline
            stop = asyncio.Event()
            baseline = resources()
            asking: Callable[[], Any] = lambda: canary.keep_asking(stop)  # noqa: E731
            canary_task = asyncio.create_task(asking())
            try:
                if kind == "fuzz":
                    report["fuzz"] = await fuzz(
                        ws_url,
                        messages=messages,
                        sessions=sessions,
                        limit=settings.server.max_message_bytes,
                        seed=seed,
                    )
                elif kind == "soak":
                    report["soak"] = await soak(ws_url, sessions=sessions, pcm=pcm)
                elif kind == "long":
                    report["long"] = await long_session(ws_url, minutes=minutes, pcm=pcm)
                else:
                    raise ValueError(f"unknown reliability benchmark {kind!r}")
            finally:
                stop.set()
                await canary_task
            tolerance: dict[str, float] = {"threads": THREAD_TOLERANCE, "fds": FD_TOLERANCE}
            after = await settle(baseline, tolerance) if local else None
            final_answered = await canary.ask()
    report["canary"] = {**canary.summary(), "answered_after": final_answered}
    if local:
        report["server_process"] = {"before": baseline, "after": after, "tolerance": tolerance}
        report["log"] = {
            "errors": watch.errors,
            "tracebacks": watch.tracebacks,
            "examples": watch.samples,
        }
    else:
        report["server_process"] = {"note": "external server: not measured"}
    if output is not None:
        write_report(output, report)
    return report


def passed(report: dict[str, Any]) -> list[str]:
    """What a report shows went wrong (empty: it passed)."""
    problems = []
    canary = report["canary"]
    if canary["failed"] or not canary["answered_after"]:
        problems.append(f"the canary was not always answered: {canary}")
    log = report.get("log")
    if log and (log["errors"] or log["tracebacks"]):
        problems.append(f"{log['errors']} ERROR lines, {log['tracebacks']} tracebacks: {log}")
    if "long" in report and (report["long"]["failed_turns"] or not report["long"]["turns"]):
        long = report["long"]
        problems.append(f"long session: {long['failed_turns']} of its turns failed: {long}")
    if "fuzz" in report and report["fuzz"]["unanswered"]:
        problems.append(f"unanswered messages: {report['fuzz']['unanswered_examples']}")
    process = report.get("server_process", {})
    if "after" in process and process["after"] is not None:
        before, after, tolerance = process["before"], process["after"], process["tolerance"]
        for key, allowed in tolerance.items():
            if after[key] > before[key] + allowed:
                problems.append(f"{key}: {before[key]} before, {after[key]} after")
    return problems
