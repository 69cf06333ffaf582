"""A server whose models are still loading, or failed to: /health and /ws say so.

The load is a Future the test resolves itself, so what the server answers before and
after does not depend on how fast this machine loads the models. Sessions on warm models
are tested against real servers (test_server.py and others).
"""

from __future__ import annotations

import json
import time
from concurrent.futures import Future

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from voicebot.config import Settings
from voicebot.models import SharedModels
from voicebot.server.app import create_app
from voicebot.server.websockets import CLOSE_TRY_AGAIN_LATER

# Without API keys the server serves only its own machine (server/auth.py).
LOCAL = ("127.0.0.1", 50000)


def health_once_settled(client: TestClient) -> tuple[int, dict[str, object]]:
    """GET /health until it stops saying `loading` (the load's result reaches the app's loop)."""
    deadline = time.monotonic() + 60
    while True:
        response = client.get("/health")
        body = response.json()
        if body.get("status") != "loading" or time.monotonic() > deadline:
            return response.status_code, body
        time.sleep(0.02)


def first_ws_message(client: TestClient) -> tuple[dict[str, object], int | None]:
    """The first event /ws sends, and the close code that follows it (None: still open)."""
    with client.websocket_connect("/ws") as ws:
        event = json.loads(ws.receive_text())
        try:
            ws.receive_text()
        except WebSocketDisconnect as closed:
            return event, closed.code
        return event, None


def test_while_models_load_health_is_503_and_sessions_are_asked_to_retry(
    settings: Settings,
) -> None:
    loading: Future[SharedModels] = Future()
    with TestClient(create_app(settings, loading=loading), client=LOCAL) as client:
        response = client.get("/health")
        assert response.status_code == 503
        assert response.json() == {"status": "loading"}
        event, code = first_ws_message(client)
        assert event["type"] == "error" and event["code"] == "not_ready"
        assert "retry when /health is 200" in str(event["message"])
        assert code == CLOSE_TRY_AGAIN_LATER


def test_a_failed_load_stays_503_naming_the_error(settings: Settings) -> None:
    loading: Future[SharedModels] = Future()
    with TestClient(create_app(settings, loading=loading), client=LOCAL) as client:
        assert client.get("/health").json() == {"status": "loading"}
        loading.set_exception(OSError("no space left on device"))
        status, body = health_once_settled(client)
        assert status == 503
        assert body == {"status": "failed", "error": "OSError: no space left on device"}
        # The server stays up to say so; sessions are still refused, not crashed.
        event, code = first_ws_message(client)
        assert event["code"] == "not_ready" and code == CLOSE_TRY_AGAIN_LATER


@pytest.mark.slow
def test_health_turns_200_when_the_load_resolves(settings: Settings, models: SharedModels) -> None:
    loading: Future[SharedModels] = Future()
    with TestClient(create_app(settings, loading=loading), client=LOCAL) as client:
        assert client.get("/health").status_code == 503
        loading.set_result(models)
        status, body = health_once_settled(client)
        assert status == 200 and body["status"] == "ok"
        assert body["running"] == models.running
        assert body["warm_ms"] == {k: round(v) for k, v in models.warm_ms.items()}
