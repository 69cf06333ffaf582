"""Live: a real private Daily room, a real daily-python person asking a spoken question.

Runs only with DAILY_API_KEY and VOICEBOT_LIVE_DAILY=1 (it contacts Daily's servers):

    DAILY_API_KEY=... VOICEBOT_LIVE_DAILY=1 .venv/bin/python -m pytest tests/test_daily_live.py
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from typing import Any

import httpx
import numpy as np
import pytest

from voicebot.config import Secrets, Settings
from voicebot.models import SharedModels
from voicebot.tools.local_server import LocalServer

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (os.environ.get("DAILY_API_KEY") and os.environ.get("VOICEBOT_LIVE_DAILY") == "1"),
        reason="live Daily test: set DAILY_API_KEY and VOICEBOT_LIVE_DAILY=1",
    ),
]

CHUNK = 320  # 20 ms at 16 kHz


def person_talks(room_url: str, token: str, question: np.ndarray, heard: list[bytes]) -> None:
    """A person in the room, on daily-python's virtual devices: says the question, listens."""
    from daily import CallClient, Daily, EventHandler

    class Events(EventHandler):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.messages: list[Any] = []

        def on_app_message(self, message: Any, sender: str) -> None:
            self.messages.append(message)

    # The bot's DailyTransport in this process has already run Daily.init().
    mic = Daily.create_microphone_device("live-mic", sample_rate=16000, channels=1)
    speaker = Daily.create_speaker_device("live-speaker", sample_rate=16000, channels=1)
    Daily.select_speaker_device("live-speaker")
    events = Events()
    client = CallClient(event_handler=events)
    joined = threading.Event()
    client.join(
        room_url,
        token,
        client_settings={
            "inputs": {
                "camera": False,
                "microphone": {"isEnabled": True, "settings": {"deviceId": "live-mic"}},
            }
        },
        completion=lambda _data, error: joined.set() if error is None else None,
    )
    assert joined.wait(30), "the person could not join the room"
    client.send_app_message(
        {"label": "rtvi-ai", "type": "client-ready", "id": "1", "data": {"version": "2.0.0"}}
    )
    silence = np.zeros(16000 * 3, dtype=np.int16)
    audio = np.concatenate([question, silence]).tobytes()
    for offset in range(0, len(audio), CHUNK * 2):
        mic.write_frames(audio[offset : offset + CHUNK * 2])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        heard.append(speaker.read_frames(CHUNK))
    print(json.dumps([m.get("type") for m in events.messages if isinstance(m, dict)]))
    client.leave()
    client.release()


async def test_a_person_in_a_real_private_room_hears_an_answer(
    settings: Settings, models: SharedModels, question_pcm: dict[str, np.ndarray]
) -> None:
    live = settings.model_copy(update={"secrets": Secrets()})
    async with LocalServer(live, models=models) as server:
        async with httpx.AsyncClient(base_url=server.http_url, timeout=60) as http:
            started = await http.post(
                "/start", json={"transport": "daily", "createDailyRoom": True}
            )
            assert started.status_code == 200, started.text
            body = started.json()
            await asyncio.sleep(2)  # the bot's transport initialises daily-python
            heard: list[bytes] = []
            await asyncio.to_thread(
                person_talks, body["dailyRoom"], body["dailyToken"], question_pcm["capital"], heard
            )
    reply = np.frombuffer(b"".join(heard), dtype=np.int16)
    loud = np.count_nonzero(np.abs(reply.astype(np.int32)) > 2000) / 16000
    assert loud > 0.3, "the person heard no spoken answer"
    # The server deleted the room when its session ended.
    name = body["dailyRoom"].rstrip("/").rsplit("/", 1)[-1]
    key = os.environ["DAILY_API_KEY"]
    async with httpx.AsyncClient(timeout=30) as http:
        gone = await http.get(
            f"{live.daily.api_url}/rooms/{name}", headers={"Authorization": f"Bearer {key}"}
        )
    assert gone.status_code == 404
