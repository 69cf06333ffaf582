"""What a server shows to anyone who can reach it: API docs off by default, origins checked."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import websockets
from fastapi.testclient import TestClient
from websockets.exceptions import InvalidStatus
from websockets.typing import Origin

from tests.helpers import tweak
from voicebot.config import Settings
from voicebot.models import SharedModels
from voicebot.server.app import create_app
from voicebot.server.origins import origin_allowed
from voicebot.server.start import PIPECAT_WS_PATH
from voicebot.tools.local_server import LocalServer

# Without API keys the server serves only its own machine (server/auth.py).
LOCAL = ("127.0.0.1", 50000)
DOC_PATHS = ("/docs", "/redoc", "/openapi.json")


@pytest.mark.parametrize("path", DOC_PATHS)
def test_api_docs_are_off_by_default(settings: Settings, path: str) -> None:
    assert settings.server.api_docs is False
    client = TestClient(create_app(settings), client=LOCAL)
    assert client.get(path).status_code == 404


@pytest.mark.parametrize("path", DOC_PATHS)
def test_api_docs_can_be_turned_on(settings: Settings, path: str) -> None:
    client = TestClient(create_app(tweak(settings, server={"api_docs": True})), client=LOCAL)
    response = client.get(path)
    assert response.status_code == 200
    assert "voicebot" in response.text


def ws_path_url(server: LocalServer, path: str) -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


@pytest.mark.parametrize("path", ["/ws", PIPECAT_WS_PATH])
async def test_websocket_from_a_foreign_origin_is_refused_with_a_reason(
    server: LocalServer, path: str
) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with websockets.connect(
            ws_path_url(server, path), origin=Origin("https://evil.example")
        ):
            pass
    response = refused.value.response
    assert response.status_code == 403
    assert b"'https://evil.example' is not allowed" in response.body


@pytest.mark.parametrize("origin", ["same", None])
async def test_websocket_from_the_same_origin_or_no_browser_is_accepted(
    server: LocalServer, origin: str | None
) -> None:
    # The browser page tests load http://127.0.0.1:PORT/ and connect to the same host:port.
    sent = Origin(server.http_url) if origin == "same" else None
    async with websockets.connect(server.ws_url, origin=sent) as ws:
        ready = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert ready["type"] == "ready"


async def test_an_allowed_origin_gets_websockets_and_cors(
    settings: Settings, models: SharedModels
) -> None:
    allowed = "https://app.example.com"
    tweaked = tweak(settings, server={"allowed_origins": [allowed]})
    async with LocalServer(tweaked, models=models) as running:
        async with websockets.connect(running.ws_url, origin=Origin(allowed)) as ws:
            ready = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert ready["type"] == "ready"
        with pytest.raises(InvalidStatus):
            async with websockets.connect(running.ws_url, origin=Origin("https://other.example")):
                pass
        async with httpx.AsyncClient() as http:
            ok = await http.get(f"{running.http_url}/health", headers={"Origin": allowed})
            foreign = await http.get(
                f"{running.http_url}/health", headers={"Origin": "https://other.example"}
            )
    assert ok.headers.get("access-control-allow-origin") == allowed
    assert "access-control-allow-origin" not in foreign.headers


def test_cors_lists_no_origin_by_default(settings: Settings) -> None:
    client = TestClient(create_app(settings), client=LOCAL)
    preflight = client.options(
        "/start",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in preflight.headers


@pytest.mark.parametrize(
    ("origin", "host", "allowed", "expected"),
    [
        (None, "127.0.0.1:7860", [], True),
        ("http://127.0.0.1:7860", "127.0.0.1:7860", [], True),
        ("http://127.0.0.1:9999", "127.0.0.1:7860", [], False),
        ("http://localhost:7860", "127.0.0.1:7860", [], False),
        ("null", "127.0.0.1:7860", [], False),
        ("https://App.example.com/", "127.0.0.1:7860", ["https://app.example.com"], True),
    ],
)
def test_origin_rules(origin: str | None, host: str, allowed: list[str], expected: bool) -> None:
    assert origin_allowed(origin, host, allowed) is expected
