"""Capacity benchmark: turn latency with N sessions talking at once, and the N+1th refused.

    .venv/bin/python -m tests.benchmark.bench_capacity --sessions 1 2 3 4 --repeats 3 \\
        --output bench-results/capacity.json

For each N, N WebSocket sessions each speak one bundled question at the same moment
(paced like a microphone) through a real server on 127.0.0.1, `--repeats` times; the
report gives every turn's latency and why any turn got no reply. `server.max_sessions` is
the largest N whose median stays near the single-session figure. Then, with max_sessions
= N, one more session is opened while N are connected: the report records its close code
and reason and whether the running sessions still answered (the capacity check of
README_PIPECAT.md, "Limits").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

import websockets
from websockets.exceptions import ConnectionClosed

from voicebot.autotune import resolve
from voicebot.bench.report import report_header, write_report
from voicebot.config import load_settings
from voicebot.models import SharedModels
from voicebot.tools.client import load_pcm16k, run_turn
from voicebot.tools.local_server import LocalServer, without_session_limits
from voicebot.tools.samples import QUESTIONS, synthesise_questions


async def concurrent_round(url: str, pcms: list[Any]) -> tuple[list[float | None], list[str]]:
    """Each session's turn latency (None: no reply within 120 s), and why each failed one did."""
    results = await asyncio.gather(
        *(run_turn(url, pcm, reply_timeout_s=120) for pcm in pcms), return_exceptions=True
    )
    latencies = [None if isinstance(r, BaseException) else r.turn_latency_ms for r in results]
    errors = [f"{type(r).__name__}: {r}" for r in results if isinstance(r, BaseException)]
    errors += [
        "no reply audio"
        for r in results
        if not isinstance(r, BaseException) and r.turn_latency_ms is None
    ]
    return latencies, errors


async def refusal_check(server: LocalServer, n: int) -> dict[str, Any]:
    """N sessions connected, one more opened: its close code, and whether the N still pong."""
    sockets = [await websockets.connect(server.ws_url) for _ in range(n)]
    try:
        for ws in sockets:
            await ws.recv()  # ready
        extra = await websockets.connect(server.ws_url)
        try:
            await asyncio.wait_for(extra.recv(), 30)
            code, reason = None, "accepted"
        except ConnectionClosed as e:
            code, reason = (e.rcvd.code, e.rcvd.reason) if e.rcvd else (None, "")
        answered = 0
        for ws in sockets:
            await ws.send(json.dumps({"type": "ping"}))
            while True:
                message = await asyncio.wait_for(ws.recv(), 30)
                if isinstance(message, str) and json.loads(message)["type"] == "pong":
                    answered += 1
                    break
        return {
            "sessions": n,
            "extra_close_code": code,
            "extra_reason": reason,
            "running_sessions_answered": answered,
        }
    finally:
        for ws in sockets:
            await ws.close()


async def main(sessions: list[int], output: Path, repeats: int = 1) -> None:
    settings = resolve(load_settings()).settings
    models = SharedModels.load(settings)
    models.warm()
    folder = Path(tempfile.mkdtemp())
    wavs = synthesise_questions(folder, settings)
    pcms = [load_pcm16k(wavs[q.name]) for q in QUESTIONS]
    rounds = []
    report: dict[str, Any] = report_header("capacity")
    report["max_sessions_auto"] = settings.server.max_sessions
    # Limits lifted: the previous round's sessions may still be closing when the next opens.
    wide = without_session_limits(settings, max(sessions) + 1)
    async with LocalServer(wide, models=models) as server:
        await run_turn(server.ws_url, pcms[0], reply_timeout_s=120)  # warm the path
        for n in sessions:
            latencies: list[float | None] = []
            errors: list[str] = []
            for r in range(repeats):
                # A different question mix each repeat; every session speaks at once.
                got_round, why = await concurrent_round(
                    server.ws_url, [pcms[(i + r) % len(pcms)] for i in range(n)]
                )
                latencies += got_round
                errors += why
            got = [x for x in latencies if x is not None]
            rounds.append(
                {
                    "sessions": n,
                    "repeats": repeats,
                    "turn_latency_ms": [round(x) if x is not None else None for x in latencies],
                    "no_reply": len(latencies) - len(got),
                    "errors": errors,
                    "median_ms": round(statistics.median(got)) if got else None,
                    "max_ms": round(max(got)) if got else None,
                }
            )
            print(json.dumps(rounds[-1]))
    report["rounds"] = rounds
    limit = settings.server.max_sessions
    assert isinstance(limit, int)
    async with LocalServer(settings, models=models) as server:
        report["refusal"] = await refusal_check(server, limit)
    print(json.dumps(report["refusal"]))
    write_report(output, report)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument("--output", type=Path, default=Path("bench-results/capacity.json"))
    parser.add_argument("--repeats", type=int, default=3, help="rounds per level (default 3)")
    args = parser.parse_args()
    asyncio.run(main(args.sessions, args.output, max(1, args.repeats)))
