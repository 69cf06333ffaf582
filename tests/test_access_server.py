"""Access control and limits on a real server: keys, session tokens, capacity, rates, timeouts.

Real uvicorn on 127.0.0.1 with real WebSocket clients; the non-loopback rule is checked by
starting `voicebot serve --host 0.0.0.0` (which must refuse) and in tests/test_access.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from pydantic import SecretStr
from websockets.exceptions import ConnectionClosed

from tests.helpers import REPO, free_port, metrics_once_no_session_runs, tweak, wait_for_status
from voicebot.config import Settings
from voicebot.models import SharedModels
from voicebot.tools.local_server import LocalServer

pytestmark = pytest.mark.slow

KEY = "sk-FAKE-SECRET-1234567890"
AUTH = {"Authorization": f"Bearer {KEY}"}
SILENCE = bytes(640)  # 20 ms of 16 kHz PCM16


def with_keys(settings: Settings, **server: Any) -> Settings:
    secrets = settings.secrets.model_copy(update={"api_keys": SecretStr(KEY)})
    return tweak(settings, server=server).model_copy(update={"secrets": secrets})


@pytest.fixture
async def keyed(settings: Settings, models: SharedModels) -> AsyncIterator[LocalServer]:
    async with LocalServer(with_keys(settings), models=models) as server:
        yield server


def http(server: LocalServer, **kwargs: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=server.http_url, timeout=30, **kwargs)


async def closed_with(url: str, **kwargs: Any) -> tuple[int, str, list[dict[str, Any]]]:
    """Connect, read until the server closes; returns (code, reason, JSON events seen)."""
    events: list[dict[str, Any]] = []
    async with websockets.connect(url, max_size=None, **kwargs) as ws:
        try:
            while True:
                message = await asyncio.wait_for(ws.recv(), 60)
                if isinstance(message, str):
                    events.append(json.loads(message))
        except ConnectionClosed as e:
            assert e.rcvd is not None
            return e.rcvd.code, e.rcvd.reason, events
    raise AssertionError("unreachable")


async def ready(ws: Any) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 60))
    assert event["type"] == "ready", event
    return event


async def pong(ws: Any) -> bool:
    await ws.send(json.dumps({"type": "ping"}))
    while True:
        message = await asyncio.wait_for(ws.recv(), 30)
        if isinstance(message, str) and json.loads(message)["type"] == "pong":
            return True


async def test_with_keys_only_health_and_pages_are_open(keyed: LocalServer) -> None:
    async with http(keyed) as client:
        assert (await client.get("/health")).status_code == 200
        assert (await client.get("/")).status_code == 200
        assert (await client.get("/static/app.js")).status_code == 200
        for method, path in [
            ("GET", "/config"),
            ("GET", "/metrics"),
            ("POST", "/start"),
            ("POST", "/api/offer"),
            ("GET", "/daily"),
            ("GET", "/no-such-route"),
        ]:
            reply = await client.request(method, path, json={})
            assert reply.status_code == 401, (path, reply.text)
            assert reply.headers["WWW-Authenticate"] == "Bearer"
            assert "Authorization: Bearer" in reply.json()["detail"]
        wrong = await client.get("/config", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and "not accepted" in wrong.json()["detail"]
        assert (await client.get("/config", headers=AUTH)).status_code == 200
        assert (await client.get("/metrics", headers=AUTH)).status_code == 200


@pytest.mark.parametrize("path", ["/ws", "/ws-client"])
async def test_a_websocket_without_a_credential_is_closed_4401(
    keyed: LocalServer, path: str
) -> None:
    code, reason, _ = await closed_with(f"ws://127.0.0.1:{keyed.port}{path}")
    assert code == 4401 and "API key" in reason
    bad = f"ws://127.0.0.1:{keyed.port}{path}?token=forged"
    code, reason, _ = await closed_with(bad)
    assert code == 4401 and "not valid" in reason


async def test_a_backend_key_gets_a_single_use_ws_token(keyed: LocalServer) -> None:
    async with http(keyed, headers=AUTH) as client:
        started = (await client.post("/start", json={"transport": "ws"})).json()
        other = (await client.post("/start", json={"transport": "websocket"})).json()
    assert started["url"].startswith(f"ws://127.0.0.1:{keyed.port}/ws?token=")
    assert started["pageUrl"].endswith(f"/?transport=websocket&token={started['token']}")
    assert 0 < started["expiresInSecs"] <= 300
    async with websockets.connect(started["url"]) as ws:
        assert (await ready(ws))["session_id"] == started["sessionId"]
        assert await pong(ws)
    code, reason, _ = await closed_with(started["url"])
    assert code == 4401 and "already used" in reason
    # A token for Pipecat's route does not open ours.
    code, reason, _ = await closed_with(other["url"].replace("/ws-client", "/ws"))
    assert code == 4401 and "'websocket', not 'ws'" in reason
    # A key holder may also connect directly (a server-side app).
    async with websockets.connect(f"ws://127.0.0.1:{keyed.port}/ws", additional_headers=AUTH) as ws:
        assert await pong(ws) if await ready(ws) else False


async def test_the_page_flow_with_a_webrtc_token(keyed: LocalServer) -> None:
    async with http(keyed, headers=AUTH) as backend:
        issued = (await backend.post("/start", json={"transport": "webrtc"})).json()
    token = issued["token"]
    assert issued["pageUrl"].endswith(f"/?transport=webrtc&token={token}")
    async with http(keyed) as browser:
        # What static/transports.js does with ?token=: /start, then the offer.
        again = await browser.post(f"/start?token={token}", json={"transport": "webrtc"})
        assert again.status_code == 200
        assert again.json() == {"sessionId": issued["sessionId"]}
        wrong_session = await browser.post(
            f"/sessions/not-mine/api/offer?token={token}", json={"type": "offer"}
        )
        assert wrong_session.status_code == 401
        offer_path = f"/sessions/{issued['sessionId']}/api/offer?token={token}"
        first = await browser.post(offer_path, json={"type": "offer"})
        assert first.status_code == 400 and "sdp" in first.json()["detail"]  # past the door
        reused = await browser.post(offer_path, json={"type": "offer"})
        assert reused.status_code == 401 and "already used" in reused.json()["detail"]


async def test_beyond_max_sessions_a_new_session_gets_1013_and_others_carry_on(
    settings: Settings, models: SharedModels
) -> None:
    async with LocalServer(tweak(settings, server={"max_sessions": 1}), models=models) as server:
        async with websockets.connect(server.ws_url) as first:
            await ready(first)
            code, reason, events = await closed_with(server.ws_url)
            assert code == 1013 and "capacity (1 sessions)" in reason
            assert events == []
            assert await pong(first)  # the running session did not notice
            async with http(server) as client:
                offer = await client.post("/api/offer", json={"sdp": "v=0\r\n", "type": "offer"})
                assert offer.status_code == 503 and offer.headers["Retry-After"] == "10"
                metrics = (await client.get("/metrics")).text
        assert 'voicebot_refusals_total{reason="server_full"} 2.0' in metrics
        # The place is given back when the session ends.
        async with http(server) as client:
            await metrics_once_no_session_runs(client)
        async with websockets.connect(server.ws_url) as again:
            assert (await ready(again))["type"] == "ready"


async def test_beyond_max_sessions_per_client_a_new_session_gets_1013(
    settings: Settings, models: SharedModels
) -> None:
    tuned = tweak(settings, server={"max_sessions": 5, "max_sessions_per_client": 1})
    async with LocalServer(tuned, models=models) as server:
        async with websockets.connect(server.ws_url) as first:
            await ready(first)
            code, reason, _ = await closed_with(server.ws_url)
            assert code == 1013 and "already runs 1 sessions" in reason
            assert await pong(first)


async def test_start_is_rate_limited_with_retry_after(
    settings: Settings, models: SharedModels
) -> None:
    tuned = tweak(settings, server={"rate_limit_burst": 3, "rate_limit_per_minute": 6})
    async with LocalServer(tuned, models=models) as server:
        async with http(server) as client:
            codes = [
                (await client.post("/start", json={"transport": "ws"})).status_code
                for _ in range(3)
            ]
            limited = await client.post("/start", json={"transport": "ws"})
            assert (await client.get("/health")).status_code == 200  # only /start and offers
    assert codes == [200, 200, 200]
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1


async def test_an_idle_session_ends_with_a_reason(settings: Settings, models: SharedModels) -> None:
    tuned = tweak(settings, server={"idle_timeout_secs": 1.0})
    async with LocalServer(tuned, models=models) as server:
        code, reason, events = await closed_with(server.ws_url)
        async with http(server) as client:
            metrics = (await client.get("/metrics")).text
    assert code == 1000 and reason.startswith("idle timeout")
    assert events[-1]["type"] == "error" and events[-1]["code"] == "idle_timeout"
    assert 'voicebot_session_limit_ends_total{reason="idle timeout"} 1.0' in metrics


async def test_a_session_past_its_time_limit_ends_though_audio_flows(
    settings: Settings, models: SharedModels
) -> None:
    # The idle clock starts before the pipeline does; 5 s leaves a busy machine room to
    # start it, and the time limit comes later still, so only flowing audio keeps idle away.
    tuned = tweak(settings, server={"idle_timeout_secs": 5.0, "max_session_secs": 7.0})
    async with LocalServer(tuned, models=models) as server:
        async with websockets.connect(server.ws_url) as ws:
            await ready(ws)

            async def stream() -> None:
                while True:
                    await ws.send(SILENCE)
                    await asyncio.sleep(0.02)

            sender = asyncio.create_task(stream())
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await asyncio.wait_for(ws.recv(), 60)
            sender.cancel()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1000
    assert closed.value.rcvd.reason.startswith("session time limit")


def test_serving_other_machines_without_keys_refuses_to_start() -> None:
    env = {k: v for k, v in os.environ.items() if k != "VOICEBOT_API_KEYS"}
    voicebot = os.path.join(os.path.dirname(sys.executable), "voicebot")
    done = subprocess.run(
        [voicebot, "serve", "--host", "0.0.0.0", "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=REPO,
    )
    assert done.returncode == 2
    assert "VOICEBOT_API_KEYS" in done.stderr and "--insecure-no-auth" in done.stderr


@pytest.fixture
def keyed_process(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """`voicebot serve` on all interfaces at DEBUG, with the fake secret as every key."""
    port = free_port()
    env = {
        **os.environ,
        "VOICEBOT_API_KEYS": KEY,
        "GROQ_API_KEY": KEY,
        "DAILY_API_KEY": KEY,
        "VOICEBOT_SESSION_SECRET": KEY,
        "VOICEBOT_SERVER__LOG_LEVEL": "DEBUG",
    }
    voicebot = os.path.join(os.path.dirname(sys.executable), "voicebot")
    log_path = tmp_path / "server.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [voicebot, "serve", "--host", "0.0.0.0", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_status(base, 300)
        yield base, log_path
    finally:
        process.terminate()
        process.wait(timeout=30)


async def test_secrets_never_leave_the_server(keyed_process: tuple[str, Path]) -> None:
    """A recognisable fake secret as every key; a DEBUG server; every kind of request."""
    base, log_path = keyed_process
    port = int(base.rsplit(":", 1)[1])
    bodies: list[str] = []
    tokens: list[str] = []
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        for path in ("/health", "/config", "/metrics", "/start"):
            bodies.append((await client.get(path)).text)
            bodies.append((await client.get(path, headers={"Authorization": "Bearer x"})).text)
        bodies.append((await client.get("/config", headers=AUTH)).text)
        bodies.append((await client.get("/metrics", headers=AUTH)).text)
        for transport in ("ws", "websocket", "webrtc"):
            started = await client.post("/start", headers=AUTH, json={"transport": transport})
            tokens.append(started.json()["token"])
        bodies.append((await client.post("/start", json={"transport": "ws"})).text)
        # A malformed Daily request: the answer names no key.
        daily = await client.post(
            "/start", headers=AUTH, json={"transport": "daily", "createDailyRoom": 1}
        )
        bodies.append(daily.text)
        bodies.append((await client.post(f"/start?token={tokens[2]}x", json={})).text)
        offer = f"/sessions/x/api/offer?token={tokens[2]}"
        bodies.append((await client.post(offer, json={"type": "offer"})).text)
    url = f"ws://127.0.0.1:{port}/ws?token={tokens[0]}"
    async with websockets.connect(url) as ws:
        bodies.append(str(await ready(ws)))
        await ws.send(json.dumps({"type": "nonsense", "token": "no"}))
        bodies.append(str(await asyncio.wait_for(ws.recv(), 30)))
    for attempt in (url, f"ws://127.0.0.1:{port}/ws?token=forged"):
        code, reason, events = await closed_with(attempt)
        bodies.append(f"{code} {reason} {events}")
    await asyncio.sleep(1.0)  # let the server write its last lines
    logged = log_path.read_text()
    assert "session started" in logged and "DEBUG" in logged  # the log was captured
    assert "/ws?token=REDACTED" in logged
    for text in [logged, *bodies]:
        assert KEY not in text
        for token in tokens:
            assert token not in text


async def test_an_idle_webrtc_session_is_told_why_and_hung_up(
    settings: Settings, models: SharedModels
) -> None:
    """The token flow over WebRTC with a real aiortc peer that sends no audio."""
    from aiortc import RTCPeerConnection, RTCSessionDescription

    tuned = with_keys(settings, idle_timeout_secs=1.5, max_sessions=1)
    async with LocalServer(tuned, models=models) as server:
        peer = RTCPeerConnection()
        peer.addTransceiver("audio", direction="sendrecv")
        channel = peer.createDataChannel("chat")
        events: list[dict[str, Any]] = []
        hung_up = asyncio.Event()

        @channel.on("message")
        def on_message(message: str) -> None:
            data = json.loads(message)
            if data.get("label") != "rtvi-ai":
                events.append(data)

        @peer.on("connectionstatechange")
        def on_state() -> None:
            if peer.connectionState in ("closed", "failed"):
                hung_up.set()

        try:
            await peer.setLocalDescription(await peer.createOffer())
            async with http(server, headers=AUTH) as backend:
                issued = (await backend.post("/start", json={"transport": "webrtc"})).json()
            async with http(server) as browser:
                answer = await browser.post(
                    issued["offerUrl"],
                    json={"sdp": peer.localDescription.sdp, "type": peer.localDescription.type},
                )
                assert answer.status_code == 200, answer.text
                body = answer.json()
                await peer.setRemoteDescription(
                    RTCSessionDescription(sdp=body["sdp"], type=body["type"])
                )
                await asyncio.wait_for(hung_up.wait(), 60)
                # The place is free again: a new session is accepted.
                async with http(server, headers=AUTH) as backend:
                    metrics = await metrics_once_no_session_runs(backend)
                    started = (await backend.post("/start", json={"transport": "ws"})).json()
                async with websockets.connect(started["url"]) as ws:
                    assert (await ready(ws))["session_id"] == started["sessionId"]
        finally:
            await peer.close()
    assert [e["code"] for e in events if e["type"] == "error"] == ["idle_timeout"]
    assert 'voicebot_session_limit_ends_total{reason="idle timeout"} 1.0' in metrics
