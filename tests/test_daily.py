"""Daily sessions end to end: the real server, Pipecat's real DailyTransport, a fake daily-python.

Daily's REST API is the local stand-in (tests/servers/daily_api.py) and `CallClient` is
tests/fake_daily.py, whose callbacks fire from its own threads as daily-python's do; no
test here contacts Daily.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import numpy as np
import pytest

from tests.fake_daily import FakeDailyRoom
from tests.helpers import hear as transcribe
from tests.helpers import run_voicebot, words
from tests.servers.daily_api import API_KEY, DailyAPIServer
from voicebot.config import DailySettings, Secrets, Settings
from voicebot.models import SharedModels
from voicebot.tools.local_server import LocalServer

pytestmark = pytest.mark.slow


async def wait_for(check: Callable[[], Any], what: str, timeout_s: float = 60) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if result := check():
            return result
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def daily_settings(settings: Settings, api: DailyAPIServer, **daily: Any) -> Settings:
    return settings.model_copy(
        update={
            "daily": DailySettings(api_url=api.url, **daily),
            "secrets": Secrets(DAILY_API_KEY=API_KEY),  # type: ignore[call-arg]
        }
    )


@pytest.fixture
async def api() -> AsyncIterator[DailyAPIServer]:
    async with DailyAPIServer() as server:
        yield server


async def start_daily(server: LocalServer) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as http:
        reply = await http.post(
            "/start",
            json={"transport": "daily", "createDailyRoom": True, "body": {"from": "test"}},
        )
    assert reply.status_code == 200, reply.text
    return reply.json()


def rtvi(room: FakeDailyRoom, kind: str) -> list[dict[str, Any]]:
    return [m for m in room.bot_messages if isinstance(m, dict) and m.get("type") == kind]


async def test_a_spoken_turn_in_a_daily_room(
    settings: Settings,
    models: SharedModels,
    api: DailyAPIServer,
    room: FakeDailyRoom,
    question_pcm: dict[str, np.ndarray],
    keywords: dict[str, Any],
) -> None:
    async with LocalServer(daily_settings(settings, api), models=models) as server:
        started = await start_daily(server)
        name = started["dailyRoom"].rsplit("/", 1)[-1]
        assert api.rooms[name]["privacy"] == "private"
        # The person gets their own non-owner token; the bot joins with the owner one.
        assert api.tokens[started["dailyToken"]]["is_owner"] is False
        await wait_for(lambda: room.joined_with, "the bot to join")
        url, bot_token = room.joined_with[0]
        assert url == started["dailyRoom"]
        assert bot_token != started["dailyToken"] and api.tokens[bot_token]["is_owner"] is True

        room.person_joins("person")
        await wait_for(lambda: "person" in room.bot.renderers, "the bot to capture the person")
        room.app_message(
            {"label": "rtvi-ai", "type": "client-ready", "id": "1", "data": {"version": "2.0.0"}}
        )
        await wait_for(lambda: rtvi(room, "bot-ready"), "bot-ready")

        # The person's own track, at the pipeline's 16 kHz (audio_in_user_tracks).
        assert ("set_audio_renderer", ("person", "microphone", 16000)) in room.bot.calls
        room.say(question_pcm["capital"])
        rate = 0

        def loud_reply_s() -> float:
            audio = np.frombuffer(bytes(room.bot_audio), dtype=np.int16)
            return float(np.count_nonzero(np.abs(audio.astype(np.int32)) > 2000)) / max(rate, 1)

        await wait_for(lambda: room.bot_audio_rate, "bot audio", timeout_s=120)
        rate = room.bot_audio_rate
        await wait_for(lambda: rtvi(room, "bot-stopped-speaking"), "the bot to finish", 120)

        assert rate == 22050  # the Piper voice's own rate, straight into the Daily track
        assert loud_reply_s() > 0.2
        said = " ".join(
            m["data"].get("text", "") for m in rtvi(room, "user-transcription") if m["data"]
        )
        assert set(keywords["capital"]) <= words(said), said
        reply = " ".join(m["data"]["text"] for m in rtvi(room, "bot-output"))
        assert words(reply), "the bot sent no bot-output text over RTVI"
        heard = words(transcribe(models, bytes(room.bot_audio), rate))
        assert len(heard & words(reply)) >= len(words(reply)) // 2, (reply, heard)

        room.person_leaves("person")
        await wait_for(lambda: name in api.deleted, "the room to be deleted", 60)
        assert room.bot.released.is_set()


async def test_join_failure_ends_the_session_and_deletes_the_room(
    settings: Settings, models: SharedModels, api: DailyAPIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    room = FakeDailyRoom(join_mode="error").install(monkeypatch)
    async with LocalServer(daily_settings(settings, api), models=models) as server:
        started = await start_daily(server)
        name = started["dailyRoom"].rsplit("/", 1)[-1]
        await wait_for(lambda: name in api.deleted, "the room to be deleted")
        await wait_for(lambda: room.bot.released.is_set(), "the call client to be released")


async def test_a_join_that_never_finishes_is_given_up(
    settings: Settings, models: SharedModels, api: DailyAPIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    FakeDailyRoom(join_mode="hang").install(monkeypatch)
    quick = daily_settings(settings, api, join_timeout_secs=1.0)
    async with LocalServer(quick, models=models) as server:
        started = await start_daily(server)
        name = started["dailyRoom"].rsplit("/", 1)[-1]
        await wait_for(lambda: name in api.deleted, "the room to be deleted")


async def test_an_ejected_bot_ends_its_session(
    settings: Settings, models: SharedModels, api: DailyAPIServer, room: FakeDailyRoom
) -> None:
    async with LocalServer(daily_settings(settings, api), models=models) as server:
        started = await start_daily(server)
        name = started["dailyRoom"].rsplit("/", 1)[-1]
        await wait_for(lambda: room.joined_with, "the bot to join")
        room.person_joins("person")
        await wait_for(lambda: "person" in room.bot.renderers, "the bot to capture the person")
        room.eject_bot()
        await wait_for(lambda: name in api.deleted, "the room to be deleted")
        await wait_for(lambda: room.bot.released.is_set(), "the call client to be released")


async def test_the_bot_waits_out_the_grace_period_for_a_returning_person(
    settings: Settings, models: SharedModels, api: DailyAPIServer, room: FakeDailyRoom
) -> None:
    graceful = daily_settings(settings, api, empty_room_grace_secs=3.0)
    async with LocalServer(graceful, models=models) as server:
        started = await start_daily(server)
        name = started["dailyRoom"].rsplit("/", 1)[-1]
        await wait_for(lambda: room.joined_with, "the bot to join")
        room.person_joins("person")
        await wait_for(lambda: "person" in room.bot.renderers, "the bot to capture the person")
        room.person_leaves("person")
        await asyncio.sleep(0.5)
        room.person_joins("person")  # back within the grace period: the session goes on
        await asyncio.sleep(4.0)
        assert name not in api.deleted
        left_at = time.monotonic()
        room.person_leaves("person")
        await wait_for(lambda: name in api.deleted, "the room to be deleted")
        assert time.monotonic() - left_at >= 2.5


async def test_server_shutdown_ends_sessions_and_deletes_their_rooms(
    settings: Settings, models: SharedModels, api: DailyAPIServer, room: FakeDailyRoom
) -> None:
    async with LocalServer(daily_settings(settings, api), models=models) as server:
        started = await start_daily(server)
        await wait_for(lambda: room.joined_with, "the bot to join")
        room.person_joins("person")
        await wait_for(lambda: "person" in room.bot.renderers, "the bot to capture the person")
    name = started["dailyRoom"].rsplit("/", 1)[-1]
    assert name in api.deleted and name not in api.rooms
    assert room.bot.released.is_set()


async def test_voicebot_daily_joins_an_existing_room_with_an_owner_token(
    api: DailyAPIServer, room: FakeDailyRoom, monkeypatch: pytest.MonkeyPatch
) -> None:
    from voicebot import cli

    api.rooms["their-room"] = {"name": "their-room"}  # a room the user made themselves
    monkeypatch.setenv("DAILY_API_KEY", API_KEY)
    monkeypatch.setenv("DAILY_API_URL", api.url)
    url = "https://voicebot-test.daily.co/their-room"
    command = asyncio.ensure_future(asyncio.to_thread(cli.main, ["daily", "--room", url]))
    await wait_for(lambda: room.joined_with or command.done(), "the bot to join", 180)
    assert not command.done(), command.result()
    joined_url, token = room.joined_with[0]
    assert joined_url == url and api.tokens[token]["is_owner"] is True
    room.eject_bot()
    assert await asyncio.wait_for(command, 60) == 0
    assert room.bot.released.is_set()
    assert "their-room" not in api.deleted  # not ours to delete


def test_voicebot_daily_refuses_what_is_not_a_room_url() -> None:
    done = run_voicebot("daily", "--room", "my-room")
    assert done.returncode == 2
    assert "--room must be a Daily room URL" in done.stderr
