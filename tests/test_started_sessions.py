"""`POST /start` session ids expire and are capped, so a flood of posts cannot grow memory."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.helpers import tweak
from voicebot.config import Settings
from voicebot.models import SharedModels
from voicebot.server.app import create_app
from voicebot.transports.webrtc import MAX_STARTED_SESSIONS, StartedSessions


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_ids_expire_after_the_ttl() -> None:
    clock = FakeClock()
    started = StartedSessions(ttl_secs=300, clock=clock)
    started.add("old")
    clock.now += 299
    assert "old" in started
    clock.now += 2
    assert "old" not in started
    started.add("new")
    assert len(started) == 1  # the expired id was dropped, not just hidden
    assert "new" in started


def test_the_default_cap_drops_the_oldest_ids() -> None:
    started = StartedSessions()
    for i in range(2 * MAX_STARTED_SESSIONS):
        started.add(f"id-{i}")
    assert len(started) == MAX_STARTED_SESSIONS == 10_000
    assert "id-0" not in started
    assert f"id-{2 * MAX_STARTED_SESSIONS - 1}" in started


@pytest.fixture
def app(settings: Settings, models: SharedModels) -> FastAPI:
    # Many posts from one client: past the default rate limit (tested in test_access_server).
    return create_app(tweak(settings, server={"rate_limit_burst": 1000}), models=models)


def test_many_start_posts_keep_the_set_bounded(app: FastAPI) -> None:
    with TestClient(app, client=("127.0.0.1", 50000)) as client:
        started: StartedSessions = app.state.webrtc.started
        started.max_ids = 50
        ids = [client.post("/start", json={}).json()["sessionId"] for _ in range(120)]
        assert len(started) == 50
        # The oldest id is gone; the newest still takes an offer (400: the SDP is missing).
        assert client.post(f"/sessions/{ids[0]}/api/offer", json={}).status_code == 404
        assert client.post(f"/sessions/{ids[-1]}/api/offer", json={}).status_code == 400


def test_an_expired_start_id_is_refused(app: FastAPI) -> None:
    with TestClient(app, client=("127.0.0.1", 50000)) as client:
        started: StartedSessions = app.state.webrtc.started
        clock = FakeClock()
        started.clock = clock
        session_id = client.post("/start", json={}).json()["sessionId"]
        clock.now += started.ttl_secs + 1
        refused = client.post(f"/sessions/{session_id}/api/offer", json={})
        assert refused.status_code == 404
        assert "POST /start first" in refused.json()["detail"]
