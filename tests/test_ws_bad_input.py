"""Bad client input on /ws: a clear error event (or a 1009 close), never a frame, never a crash."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from voicebot.tools.client import run_turn
from voicebot.tools.local_server import LocalServer
from voicebot.transports import websocket as ws_transport


async def next_event(ws: Any, wait_s: float = 5.0) -> dict[str, Any]:
    """The next JSON message, skipping any binary audio."""
    while True:
        message = await asyncio.wait_for(ws.recv(), wait_s)
        if isinstance(message, str):
            return json.loads(message)


@pytest.fixture
def pushed_audio(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Sizes of every audio frame the /ws input transport pushes into a pipeline."""
    sizes: list[int] = []
    original = ws_transport._ProtocolInputTransport.push_audio_frame

    async def spy(self: Any, frame: Any) -> None:
        sizes.append(len(frame.audio))
        await original(self, frame)

    monkeypatch.setattr(ws_transport._ProtocolInputTransport, "push_audio_frame", spy)
    return sizes


@pytest.mark.parametrize(
    ("message", "code", "hint"),
    [
        (b"\x01\x02\x03", "invalid_audio", "16-bit"),
        (b"", "empty_audio", "PCM16LE"),
        ("{not json", "invalid_json", "not valid JSON"),
        ('{"type": "hello"}', "unknown_message_type", "'hello'"),
        ('{"kind": "ping"}', "unknown_message_type", "allowed types: ping"),
        ("[1, 2, 3]", "invalid_message", "JSON object"),
        ('"ping"', "invalid_message", "JSON object"),
    ],
)
async def test_malformed_message_gets_error_event_and_no_frame(
    server: LocalServer, pushed_audio: list[int], message: str | bytes, code: str, hint: str
) -> None:
    async with websockets.connect(server.ws_url) as ws:
        assert (await next_event(ws))["type"] == "ready"
        await ws.send(message)
        error = await next_event(ws)
        assert error["type"] == "error"
        assert error["code"] == code
        assert hint in error["message"]
        # The connection is still usable afterwards.
        await ws.send(json.dumps({"type": "ping"}))
        assert (await next_event(ws))["type"] == "pong"
    assert pushed_audio == []


async def test_oversized_message_closes_with_1009(
    server: LocalServer, pushed_audio: list[int]
) -> None:
    limit = server_limit(server)
    async with websockets.connect(server.ws_url, max_size=None) as ws:
        assert (await next_event(ws))["type"] == "ready"
        await ws.send(bytes(limit + 2))
        with pytest.raises(ConnectionClosed) as closed:
            await next_event(ws)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1009
    assert f"{limit}-byte limit" in closed.value.rcvd.reason
    assert pushed_audio == []


def server_limit(server: LocalServer) -> int:
    return int(server._settings.server.max_message_bytes)


async def test_other_sessions_unaffected_by_a_misbehaving_client(
    server: LocalServer, question_pcm: dict[str, np.ndarray]
) -> None:
    async def misbehave() -> int:
        errors = 0
        async with websockets.connect(server.ws_url, max_size=None) as ws:
            await next_event(ws)
            for _ in range(50):
                await ws.send(b"\xff" * 641)
                await ws.send("{bad json")
                errors += (await next_event(ws))["type"] == "error"
                errors += (await next_event(ws))["type"] == "error"
                await asyncio.sleep(0.02)
            await ws.send(bytes(server_limit(server) * 2))
            with pytest.raises(ConnectionClosed):
                await next_event(ws)
        return errors

    turn, errors = await asyncio.gather(
        run_turn(server.ws_url, question_pcm["capital"]), misbehave()
    )
    assert errors == 100
    assert "france" in turn.transcript.lower()
    assert turn.reply_audio_s > 0.5
