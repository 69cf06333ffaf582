"""Rooms and tokens against a local stand-in for Daily's REST API (no network)."""

from __future__ import annotations

import time

import pytest

from tests.servers.daily_api import API_KEY, DailyAPIServer
from voicebot.config import DailySettings
from voicebot.transports.daily_rooms import DailyAPIError, DailyRooms


def rooms_for(api: DailyAPIServer, key: str = API_KEY, **settings: object) -> DailyRooms:
    return DailyRooms(DailySettings(api_url=api.url, **settings), key)  # type: ignore[arg-type]


async def test_a_session_gets_a_private_expiring_room_and_two_different_tokens() -> None:
    async with DailyAPIServer() as api:
        rooms = rooms_for(api, room_expiry_secs=600, bot_name="Bot")
        try:
            room = await rooms.create()
        finally:
            await rooms.close()

    created = api.calls("POST", "/rooms")[0]["body"]
    assert created["privacy"] == "private"
    props = created["properties"]
    assert props["eject_at_room_exp"] is True
    assert props["enable_prejoin_ui"] is False
    assert props["start_video_off"] is True
    assert props["max_participants"] == 2
    assert time.time() + 500 < props["exp"] <= time.time() + 600

    assert room.bot_token != room.user_token
    bot, user = api.tokens[room.bot_token], api.tokens[room.user_token]
    assert bot["is_owner"] is True and user["is_owner"] is False
    assert bot["room_name"] == user["room_name"] == room.name
    assert bot["user_name"] == "Bot"
    assert bot["eject_at_token_exp"] is True and user["eject_at_token_exp"] is True
    assert user["exp"] <= props["exp"] + 1
    assert all(r["auth"] == f"Bearer {API_KEY}" for r in api.requests)


async def test_params_are_fresh_on_every_call_and_client_properties_cannot_weaken_them() -> None:
    async with DailyAPIServer() as api:
        rooms = rooms_for(api)
        try:
            first = await rooms.create(
                {"enable_chat": True, "max_participants": 50, "exp": time.time() + 10**6},
                {"user_name": "Ada", "is_owner": True},
            )
            second = await rooms.create()
        finally:
            await rooms.close()
    bodies = [r["body"] for r in api.calls("POST", "/rooms")]
    assert bodies[0]["properties"]["enable_chat"] is True
    assert bodies[0]["properties"]["max_participants"] == 2
    assert bodies[0]["properties"]["exp"] < time.time() + 3700
    assert bodies[1]["properties"]["enable_chat"] is False
    assert api.tokens[first.user_token]["user_name"] == "Ada"
    assert api.tokens[first.user_token]["is_owner"] is False
    # The second session's person token carries none of the first one's properties.
    assert api.tokens[second.user_token]["user_name"] == "guest"
    assert api.tokens[second.user_token]["room_name"] == second.name


async def test_delete_removes_the_room_and_a_missing_room_is_fine() -> None:
    async with DailyAPIServer() as api:
        rooms = rooms_for(api)
        try:
            room = await rooms.create()
            assert await rooms.delete(room.name)
            assert await rooms.delete(room.name)  # 404 the second time: already gone
        finally:
            await rooms.close()
    assert room.name not in api.rooms
    assert api.deleted == [room.name, room.name]


@pytest.mark.parametrize(
    ("mode", "key", "http_status", "attempts", "says"),
    [
        ("normal", "wrong-key", 502, 1, "DAILY_API_KEY"),
        ("unauthorized", API_KEY, 502, 1, "DAILY_API_KEY"),
        ("rate_limited", API_KEY, 503, 1, "rate limiting"),
        ("error", API_KEY, 502, 2, "status 500"),
    ],
)
async def test_daily_errors_become_clear_errors_with_at_most_one_retry(
    mode: str, key: str, http_status: int, attempts: int, says: str
) -> None:
    async with DailyAPIServer(mode=mode) as api:
        rooms = rooms_for(api, key=key)
        try:
            with pytest.raises(DailyAPIError) as caught:
                await rooms.create()
        finally:
            await rooms.close()
    assert caught.value.http_status == http_status
    assert says in str(caught.value)
    assert key not in str(caught.value)  # the key never reaches an error message
    assert len(api.calls("POST", "/rooms")) == attempts


async def test_one_5xx_is_retried_and_the_room_still_made() -> None:
    async with DailyAPIServer(mode="error", faults=1) as api:
        rooms = rooms_for(api)
        try:
            room = await rooms.create()
        finally:
            await rooms.close()
    assert room.name in api.rooms
    assert len(api.calls("POST", "/rooms")) == 2


async def test_a_hanging_daily_times_out_after_one_retry() -> None:
    async with DailyAPIServer(mode="hang") as api:
        rooms = rooms_for(api, request_timeout_secs=0.3)
        try:
            with pytest.raises(DailyAPIError) as caught:
                await rooms.create()
        finally:
            await rooms.close()
    assert caught.value.http_status == 504
    assert len(api.calls("POST", "/rooms")) == 2


async def test_a_failed_token_deletes_the_room_it_was_for() -> None:
    async with DailyAPIServer() as api:
        rooms = rooms_for(api)
        try:
            with pytest.raises(DailyAPIError) as caught:
                await rooms.create(token_properties={"enable_recording": "not-a-mode"})
        finally:
            await rooms.close()
    assert caught.value.http_status == 400
    assert api.rooms == {} and len(api.deleted) == 1


async def test_invalid_client_properties_are_refused_before_daily_is_asked() -> None:
    async with DailyAPIServer() as api:
        rooms = rooms_for(api)
        try:
            for bad in ({"exp": "tomorrow"}, {"enable_recording": "everything"}):
                with pytest.raises(DailyAPIError) as caught:
                    await rooms.create(bad)
                assert caught.value.http_status == 400
                assert "dailyRoomProperties" in str(caught.value)
        finally:
            await rooms.close()
    assert api.requests == []
