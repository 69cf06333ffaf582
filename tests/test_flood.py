"""Flood control: audio faster than real time, or a flood of pings, closes with 1008 and a reason.

Fast tests drive the budgets with a fake clock; slow ones flood a real server on 127.0.0.1
while another session asks a question, and record the server's memory.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import psutil
import pytest
import websockets
from pipecat.frames.frames import OutputAudioRawFrame
from pipecat.serializers.protobuf import ProtobufFrameSerializer
from websockets.exceptions import ConnectionClosed

from tests.helpers import wait_for_status
from voicebot.tools.client import run_turn
from voicebot.tools.local_server import LocalServer
from voicebot.transports.flood import CLOSE_POLICY_VIOLATION, FloodGuard

CHUNK = 320  # 20 ms at 16 kHz


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def guard(clock: FakeClock) -> FloodGuard:
    return FloodGuard(
        max_audio_speed=1.5, audio_burst_secs=3.0, max_messages_per_sec=50, clock=clock
    )


def send_audio(flood: FloodGuard, clock: FakeClock, speed: float, secs: float) -> float | None:
    """Feed 20 ms chunks at `speed` x real time for `secs` of wall time; when it was refused."""
    start = clock.now
    while clock.now - start < secs:
        if flood.audio_received(0.02) is not None:
            return clock.now - start
        clock.now += 0.02 / speed
    return None


@pytest.mark.parametrize("speed", [1.0, 1.3, 1.45])
def test_real_time_audio_is_never_refused(speed: float) -> None:
    clock = FakeClock()
    assert send_audio(guard(clock), clock, speed, secs=600) is None


def test_a_network_stall_then_catching_up_is_fine() -> None:
    clock = FakeClock()
    flood = guard(clock)
    assert send_audio(flood, clock, 1.0, secs=10) is None
    clock.now += 2.5  # nothing arrives for 2.5 s, then the buffered audio at once
    assert send_audio(flood, clock, 1000.0, secs=2.5 / 1000) is None
    assert send_audio(flood, clock, 1.0, secs=10) is None


@pytest.mark.parametrize(("speed", "within_s"), [(20.0, 0.5), (370.0, 0.1), (3.0, 3.0)])
def test_audio_faster_than_real_time_is_refused_with_its_speed(
    speed: float, within_s: float
) -> None:
    clock = FakeClock()
    flood = guard(clock)
    refused_after = send_audio(flood, clock, speed, secs=10)
    assert refused_after is not None and refused_after <= within_s
    reason = flood.audio_received(0.02)
    assert reason is not None
    assert "faster than real time" in reason and "real-time pace" in reason
    assert f"{speed:.0f}" in reason.split("(")[1] or speed > 100
    assert len(reason.encode()) <= 123  # a WebSocket close reason's limit


def test_tiny_audio_messages_count_as_two_milliseconds() -> None:
    clock = FakeClock()
    flood = guard(clock)
    refused = None
    for _ in range(16000):  # one sample per message at real time: 16,000 messages a second
        if flood.audio_received(1 / 16000) is not None:
            refused = clock.now
            break
        clock.now += 1 / 16000
    assert refused is not None and refused < 1.0


def test_pings_once_a_second_are_fine_a_flood_is_not() -> None:
    clock = FakeClock()
    flood = guard(clock)
    for _ in range(600):
        assert flood.message_received() is None
        clock.now += 1.0
    for _ in range(99):  # a burst of two seconds' worth passes
        assert flood.message_received() is None
    refused = [flood.message_received() for _ in range(200)]
    reason = next(r for r in refused if r is not None)
    assert "too many control messages" in reason and "limit is 50" in reason


@dataclass
class FloodResult:
    code: int | None
    reason: str
    closed_after_s: float | None
    audio_sent_s: float


async def flood_audio(
    url: str, pcm: np.ndarray, *, speed: float | None, secs: float, pipecat: bool = False
) -> FloodResult:
    """Send `pcm` looped at `speed` x real time (None: as fast as possible) for `secs`."""
    serializer = ProtobufFrameSerializer()
    sent = 0
    start = time.monotonic()
    async with websockets.connect(url, max_size=None) as ws:
        if not pipecat:
            assert json.loads(await ws.recv())["type"] == "ready"
        start = time.monotonic()
        try:
            while time.monotonic() - start < secs:
                offset = (sent * CHUNK) % (len(pcm) - CHUNK)
                chunk = pcm[offset : offset + CHUNK].tobytes()
                if pipecat:
                    frame = OutputAudioRawFrame(audio=chunk, sample_rate=16000, num_channels=1)
                    data = await serializer.serialize(frame)
                    assert data is not None
                    await ws.send(data)
                else:
                    await ws.send(chunk)
                sent += 1
                due = start + sent * 0.02 / speed if speed else 0.0
                await asyncio.sleep(max(0.0, due - time.monotonic()))
            await asyncio.wait_for(ws.wait_closed(), 5)
        except (ConnectionClosed, TimeoutError):
            pass
        closed = ws.close_code is not None
        return FloodResult(
            code=ws.close_code,
            reason=ws.close_reason or "",
            closed_after_s=time.monotonic() - start if closed else None,
            audio_sent_s=sent * 0.02,
        )


@pytest.mark.parametrize("path", ["/ws", "/ws-client"])
async def test_a_20x_flood_is_closed_with_1008_and_a_reason(
    server: LocalServer, question_pcm: dict[str, np.ndarray], path: str
) -> None:
    url = f"ws://127.0.0.1:{server.port}{path}"
    result = await flood_audio(
        url, question_pcm["capital"], speed=20.0, secs=5.0, pipecat=path == "/ws-client"
    )
    print(f"{path}: 20x flood closed after {result.closed_after_s} s, {result.audio_sent_s} s sent")
    assert result.code == CLOSE_POLICY_VIOLATION
    assert "faster than real time" in result.reason and "real-time pace" in result.reason
    # Closed long before the 5 s of flooding were over (measured ~0.2 s; generous here).
    assert result.audio_sent_s < 20.0 * 4.5


async def test_a_real_time_client_with_bursts_is_never_closed(
    server: LocalServer, question_pcm: dict[str, np.ndarray]
) -> None:
    # 6 s at 1.3x, then a spoken question at 1.0x and its answer: nothing is closed.
    result = await flood_audio(server.ws_url, question_pcm["capital"], speed=1.3, secs=6.0)
    assert result.code in (None, 1000), result
    turn = await run_turn(server.ws_url, question_pcm["capital"])
    assert turn.reply


async def test_ping_flood_is_closed_with_1008(server: LocalServer) -> None:
    async with websockets.connect(server.ws_url) as ws:
        assert json.loads(await ws.recv())["type"] == "ready"
        with pytest.raises(ConnectionClosed) as closed:
            for _ in range(5000):
                await ws.send(json.dumps({"type": "ping"}))
            while True:
                await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == CLOSE_POLICY_VIOLATION
    assert "too many control messages" in closed.value.rcvd.reason


async def test_a_bystander_is_answered_during_an_unpaced_flood_and_memory_stays_flat(
    serve_process: tuple[subprocess.Popen[str], str],
    question_pcm: dict[str, np.ndarray],
    keywords: dict[str, Any],
) -> None:
    # The server in its own process, so the flood is as fast as the socket allows
    # (in one process the client would share the server's event loop).
    process, url = serve_process
    wait_for_status(url, timeout_s=300)
    ws_url = url.replace("http", "ws") + "/ws"
    server = psutil.Process(process.pid)
    # Warm (the first session's one-offs), and the turn latency without a flood.
    quiet = await run_turn(ws_url, question_pcm["capital"])
    before = server.memory_info().rss / 2**20
    peak = before
    sampling = True

    async def sample() -> None:
        nonlocal peak
        while sampling:
            peak = max(peak, server.memory_info().rss / 2**20)
            await asyncio.sleep(0.05)

    sampler = asyncio.create_task(sample())
    bystander = asyncio.create_task(run_turn(ws_url, question_pcm["capital"]))
    await asyncio.sleep(0.5)  # the bystander is mid-question when the floods start
    floods = await asyncio.gather(
        *(flood_audio(ws_url, question_pcm["capital"], speed=None, secs=5.0) for _ in range(3))
    )
    turn = await bystander
    await asyncio.sleep(2.0)
    sampling = False
    await sampler
    after = server.memory_info().rss / 2**20
    print(
        f"unpaced floods closed after {[f.closed_after_s for f in floods]} s "
        f"({[round(f.audio_sent_s, 1) for f in floods]} s of audio sent); RSS before "
        f"{before:.0f} MB, peak {peak:.0f} MB, after {after:.0f} MB; "
        f"bystander turn {turn.turn_latency_ms} ms (without a flood {quiet.turn_latency_ms} ms)"
    )
    for flood in floods:
        assert flood.code == CLOSE_POLICY_VIOLATION, flood
    assert any(k in turn.reply.lower() for k in keywords["capital"]), turn.reply
    # Each flood gets at most its burst (3 s) plus 1.5x the time to close of audio into
    # the pipeline: a few hundred KB of PCM. Unguarded, the server grew 266 MB on one
    # such flood and kept most of it; allow 64 MB of allocator noise on a busy machine.
    assert after - before < 64, (before, peak, after)
