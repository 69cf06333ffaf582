"""`POST /start` and `GET /daily`: the Pipecat runner's contract, and clear errors around it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.fake_daily import FakeDailyRoom
from tests.servers.daily_api import DailyAPIServer
from tests.test_daily import daily_settings, wait_for
from voicebot.config import Settings
from voicebot.models import SharedModels
from voicebot.tools.local_server import LocalServer

pytestmark = pytest.mark.slow


@pytest.fixture
async def http(server: LocalServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as client:
        yield client


async def test_webrtc_start_gives_a_session_id_for_the_offer(http: httpx.AsyncClient) -> None:
    for body in ({"transport": "webrtc"}, {}):
        reply = await http.post("/start", json=body)
        assert reply.status_code == 200
        session_id = reply.json()["sessionId"]
        offer = await http.post(f"/sessions/{session_id}/api/offer", json={"type": "offer"})
        assert offer.status_code == 400  # known session: only the missing SDP is wrong
        assert "sdp" in offer.json()["detail"]


async def test_websocket_start_points_at_the_pipecat_websocket(
    server: LocalServer, http: httpx.AsyncClient
) -> None:
    reply = await http.post("/start", json={"transport": "websocket"})
    assert reply.status_code == 200
    ws_url = reply.json()["wsUrl"]
    assert ws_url.startswith(f"ws://127.0.0.1:{server.port}/ws-client?token=")
    assert reply.json()["url"] == ws_url
    assert reply.json()["sessionId"]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"transport": "daily", "createDailyRoom": True}, "DAILY_API_KEY"),
        ({"createDailyRoom": True}, "DAILY_API_KEY"),
        ({"transport": "livekit"}, "webrtc, daily, websocket"),
        ({"transport": "twilio"}, "set transport"),
    ],
)
async def test_what_is_not_available_is_a_400_saying_what_to_set(
    http: httpx.AsyncClient, body: dict[str, Any], says: str
) -> None:
    reply = await http.post("/start", json=body)
    assert reply.status_code == 400
    assert says in reply.json()["detail"]
    daily = await http.get("/daily", follow_redirects=False)
    assert daily.status_code == 400 and "DAILY_API_KEY" in daily.json()["detail"]


async def test_a_body_that_is_not_a_json_object_is_a_400(http: httpx.AsyncClient) -> None:
    assert (await http.post("/start", content=b"{not json")).status_code == 400
    assert (await http.post("/start", json=[1, 2])).status_code == 400


@pytest.mark.parametrize(
    ("mode", "status", "says"),
    [
        ("unauthorized", 502, "DAILY_API_KEY"),
        ("rate_limited", 503, "rate limiting"),
        ("error", 502, "status 500"),
        ("hang", 504, "timed out"),
    ],
)
async def test_daily_failures_are_clear_http_errors(
    settings: Settings,
    models: SharedModels,
    room: FakeDailyRoom,
    mode: str,
    status: int,
    says: str,
) -> None:
    async with DailyAPIServer(mode=mode) as api:
        quick = daily_settings(settings, api, request_timeout_secs=0.5)
        async with LocalServer(quick, models=models) as server:
            async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as http:
                reply = await http.post(
                    "/start", json={"transport": "daily", "createDailyRoom": True}
                )
    assert reply.status_code == status
    assert says in reply.json()["detail"]
    assert not room.clients, "no bot may start without a room"


async def test_daily_start_and_the_daily_page_redirect(
    settings: Settings, models: SharedModels, room: FakeDailyRoom
) -> None:
    async with DailyAPIServer() as api:
        async with LocalServer(daily_settings(settings, api), models=models) as server:
            async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as http:
                started = await http.post(
                    "/start",
                    json={
                        "transport": "daily",
                        "createDailyRoom": True,
                        "dailyRoomProperties": {"enable_chat": True},
                        "dailyMeetingTokenProperties": {"user_name": "Ada"},
                        "body": {"anything": 1},
                    },
                )
                page = await http.get("/daily", follow_redirects=False)
                bad = await http.post(
                    "/start",
                    json={"transport": "daily", "createDailyRoom": True, "dailyRoomProperties": 5},
                )
            await wait_for(lambda: len(room.joined_with) == 2, "two bots to join")

    assert started.status_code == 200
    body = started.json()
    assert set(body) == {"dailyRoom", "dailyToken", "sessionId"}
    assert api.tokens[body["dailyToken"]]["user_name"] == "Ada"
    assert api.tokens[body["dailyToken"]]["is_owner"] is False

    assert page.status_code == 307
    room_url, _, query = page.headers["location"].partition("?t=")
    assert room_url.startswith("https://voicebot-test.daily.co/")
    assert api.tokens[query]["is_owner"] is False
    assert {url for url, _ in room.joined_with} == {body["dailyRoom"], room_url}
    # Every room made here was deleted when the server shut down.
    assert api.rooms == {}
    assert bad.status_code == 400
