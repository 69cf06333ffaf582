"""Bad client input on /ws: a clear error event (or a 1009 close), never a frame, never a crash."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import websockets
from loguru import logger
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


async def test_the_server_declines_compression_of_the_audio(server: LocalServer) -> None:
    # The websockets client, like a browser, offers permessage-deflate.
    async with websockets.connect(server.ws_url, compression="deflate") as ws:
        assert (await next_event(ws))["type"] == "ready"
        assert ws.protocol.extensions == []
        await ws.send(np.zeros(320, dtype=np.int16).tobytes())
        await ws.send(json.dumps({"type": "ping"}))
        assert (await next_event(ws))["type"] == "pong"


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


@pytest.fixture
def server_log(caplog: pytest.LogCaptureFixture) -> Iterator[list[str]]:
    """Every line loguru and uvicorn's loggers write while the test runs, as 'LEVEL message'."""
    lines: list[str] = []

    def sink(message: Any) -> None:
        record = message.record
        exception = record["exception"]
        lines.append(f"{record['level'].name} {record['message']}")
        if exception is not None:
            lines.append("Traceback (from loguru)")

    sink_id = logger.add(sink, level="DEBUG", format="{message}")
    uvicorn_logger = logging.getLogger("uvicorn")
    uvicorn_logger.addHandler(caplog.handler)
    try:
        yield lines
    finally:
        logger.remove(sink_id)
        uvicorn_logger.removeHandler(caplog.handler)
        for record in caplog.records:
            lines.append(f"{record.levelname} {record.getMessage()}")
            if record.exc_info:
                lines.append("Traceback (from logging)")


def assert_quiet(lines: list[str]) -> None:
    loud = [line for line in lines if line.startswith(("ERROR", "CRITICAL")) or "Traceback" in line]
    assert loud == [], loud


async def error_or_close(ws: Any) -> tuple[str, str]:
    """('error', code) for an error event, or ('close', 'CODE reason') for a close."""
    try:
        event = await next_event(ws, wait_s=20.0)
    except ConnectionClosed as closed:
        assert closed.rcvd is not None, "closed without a close frame"
        assert closed.rcvd.reason, f"close {closed.rcvd.code} has no reason"
        return "close", f"{closed.rcvd.code} {closed.rcvd.reason}"
    assert event["type"] == "error"
    assert event["message"]
    return "error", event["code"]


HOSTILE_MESSAGES: list[tuple[str, str | bytes]] = [
    ("nested_json_100k", "[" * 100_000 + "]" * 100_000),
    ("nested_json_under_limit", "[" * 30_000 + "]" * 30_000),
    ("integer_100k_digits", "1" * 100_000),
    ("integer_50k_digits", '{"type": "ping", "n": ' + "9" * 50_000 + "}"),
    ("odd_binary_garbage", bytes(range(251)) * 3),
]


@pytest.mark.parametrize(
    ("name", "message"), HOSTILE_MESSAGES, ids=[n for n, _ in HOSTILE_MESSAGES]
)
async def test_hostile_message_gets_a_reason_and_no_error_log(
    server: LocalServer,
    server_log: list[str],
    question_pcm: dict[str, np.ndarray],
    name: str,
    message: str | bytes,
) -> None:
    async with websockets.connect(server.ws_url, max_size=None) as ws:
        assert (await next_event(ws))["type"] == "ready"
        await ws.send(message)
        kind, detail = await error_or_close(ws)
    if len(message) <= server_limit(server):
        # Small enough to be read: an error event naming the problem, not a close.
        assert kind == "error", detail
        assert detail in {"invalid_json", "invalid_audio"}
    else:
        assert (kind, detail.split()[0]) == ("close", "1009")
    turn = await run_turn(server.ws_url, question_pcm["capital"])
    assert "france" in turn.transcript.lower()
    await asyncio.sleep(0.5)  # let the refused session finish tearing down
    assert_quiet(server_log)


async def test_invalid_utf8_text_closes_1007_with_a_reason(
    server: LocalServer, server_log: list[str], question_pcm: dict[str, np.ndarray]
) -> None:
    async with websockets.connect(server.ws_url) as ws:
        assert (await next_event(ws))["type"] == "ready"
        # websockets' send() only sends valid text; write the raw frame through its protocol.
        ws.protocol.send_text(b'{"type": "\xff\xfe"}')
        ws.send_data()
        kind, detail = await error_or_close(ws)
    assert kind == "close"
    assert detail.startswith("1007 ") and "UTF-8" in detail
    turn = await run_turn(server.ws_url, question_pcm["capital"])
    assert "france" in turn.transcript.lower()
    await asyncio.sleep(0.5)
    assert_quiet(server_log)
    assert any("INFO protocol error from client" in line for line in server_log)


async def test_oversized_message_close_logs_no_error(
    server: LocalServer, server_log: list[str]
) -> None:
    for _ in range(3):
        async with websockets.connect(server.ws_url, max_size=None) as ws:
            assert (await next_event(ws))["type"] == "ready"
            await ws.send(bytes(server_limit(server) + 2))
            kind, detail = await error_or_close(ws)
        assert (kind, detail.split()[0]) == ("close", "1009")
    await asyncio.sleep(1.5)  # Pipecat's disconnect runs as the session ends
    assert_quiet(server_log)
