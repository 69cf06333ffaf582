"""Graceful drain: SIGTERM lets the turn in progress finish, then closes 1001 and exits 0."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from typing import Any

import httpx
import numpy as np
import websockets
from websockets.exceptions import ConnectionClosed

from tests.helpers import wait_for_status

CHUNK = 320  # 20 ms at 16 kHz


class Conversation:
    """A /ws client speaking like a microphone (the question, then silence) and listening."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []
        self.audio_bytes = 0
        self.close_code: int | None = None
        self.close_reason = ""
        self.speech_sent = asyncio.Event()

    async def speak(self, pcm: np.ndarray) -> None:
        start = time.monotonic()
        sent = 0
        try:
            while True:
                chunk = pcm[sent * CHUNK : (sent + 1) * CHUNK]
                if len(chunk) < CHUNK:
                    self.speech_sent.set()
                    chunk = np.zeros(CHUNK, dtype=np.int16)
                await self.ws.send(chunk.tobytes())
                sent += 1
                await asyncio.sleep(max(0.0, start + sent * 0.02 - time.monotonic()))
        except ConnectionClosed:
            pass

    async def listen(self) -> None:
        try:
            async for message in self.ws:
                if isinstance(message, bytes):
                    self.audio_bytes += len(message)
                else:
                    self.events.append(json.loads(message))
        except ConnectionClosed:
            pass
        self.close_code = self.ws.close_code
        self.close_reason = self.ws.close_reason or ""

    def types(self) -> list[str]:
        return [e["type"] for e in self.events]


async def test_sigterm_mid_turn_finishes_the_reply_then_closes_1001_and_exits_0(
    serve_process: tuple[subprocess.Popen[str], str], question_pcm: dict[str, np.ndarray]
) -> None:
    process, url = serve_process
    wait_for_status(url, timeout_s=300)
    ws_url = url.replace("http", "ws") + "/ws"
    async with websockets.connect(ws_url, max_size=None) as ws:
        ready = json.loads(await ws.recv())
        assert ready["type"] == "ready"
        talk = Conversation(ws)
        speaking = asyncio.create_task(talk.speak(question_pcm["capital"]))
        listening = asyncio.create_task(talk.listen())
        await asyncio.wait_for(talk.speech_sent.wait(), 30)
        await asyncio.sleep(0.3)  # the speech has just ended; the turn is in progress
        process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()

        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            health = await http.get("/health")
            start = await http.post("/start", json={"transport": "webrtc"})
        async with websockets.connect(ws_url) as late:
            refused = [json.loads(await late.recv())]
            try:
                await asyncio.wait_for(late.recv(), 5)
            except ConnectionClosed:
                pass
            late_close = (late.close_code, late.close_reason)

        await asyncio.wait_for(listening, 60)
        closed_after = time.monotonic() - signalled
        speaking.cancel()
    exit_code = process.wait(timeout=60)
    log = process.stdout.read() if process.stdout else ""

    print(f"closed {closed_after:.1f} s after SIGTERM; events {talk.types()}")
    assert health.status_code == 503 and health.json() == {"status": "draining"}
    assert start.status_code == 503 and "restarting" in start.json()["detail"]
    assert refused[0]["code"] == "draining"
    assert late_close == (1013, "server draining")
    # The turn in progress was answered in full before the close.
    types = talk.types()
    assert "transcript" in types and "bot_text" in types, types
    assert "bot_started_speaking" in types and "bot_stopped_speaking" in types, types
    assert types.index("bot_stopped_speaking") > types.index("bot_started_speaking")
    assert talk.audio_bytes > ready["sample_rate"] * 2 * 0.5  # over half a second of reply
    assert (talk.close_code, talk.close_reason) == (1001, "server restarting")
    assert exit_code == 0, log[-3000:]
    assert "draining" in log and "Traceback" not in log
