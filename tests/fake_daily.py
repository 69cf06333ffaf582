"""A fake daily-python for Pipecat's real DailyTransport: no network, no `join()` to Daily.

`FakeDailyRoom.install(monkeypatch)` replaces `CallClient`, `CustomAudioSource`,
`CustomAudioTrack` and `Daily` inside `pipecat.transports.daily.transport`. As in
daily-python, every completion and event callback fires from a thread of the fake's own,
never from the asyncio loop; people in the room speak through the audio renderer the
transport registered (20 ms chunks at real-time pace), and the bot's audio is captured
from the audio source it writes to, consumed at real-time pace like a real track.
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

CHUNK_SAMPLES = 320  # 20 ms at 16 kHz


@dataclass
class AudioData:
    """What daily-python hands an audio renderer."""

    audio_frames: bytes
    sample_rate: int
    num_channels: int


class _CallbackThread:
    """Runs callbacks one after another on a thread, like daily-python's event thread."""

    def __init__(self) -> None:
        self._queue: queue.Queue[tuple[Callable[..., Any], tuple[Any, ...]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="fake-daily-events", daemon=True)
        self._thread.start()

    def call(self, fn: Callable[..., Any] | None, *args: Any) -> None:
        if fn is not None:
            self._queue.put((fn, args))

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            fn, args = item
            fn(*args)

    def stop(self) -> None:
        self._queue.put(None)


class _Person:
    """A person's microphone: silence unless speaking, 20 ms per chunk at real-time pace."""

    def __init__(self, room: FakeDailyRoom, participant_id: str) -> None:
        self.id = participant_id
        self._room = room
        self._pending: queue.Queue[np.ndarray] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"mic-{participant_id}", daemon=True)
        self._thread.start()

    def say(self, pcm16k: np.ndarray) -> None:
        for start in range(0, len(pcm16k), CHUNK_SAMPLES):
            chunk = pcm16k[start : start + CHUNK_SAMPLES]
            self._pending.put(np.pad(chunk, (0, CHUNK_SAMPLES - len(chunk))))

    def _run(self) -> None:
        silence = np.zeros(CHUNK_SAMPLES, dtype=np.int16)
        started = time.monotonic()
        sent = 0
        while not self._stop.is_set():
            try:
                chunk = self._pending.get_nowait()
            except queue.Empty:
                chunk = silence
            self._room.deliver_audio(self.id, chunk.astype(np.int16).tobytes())
            sent += 1
            time.sleep(max(0.0, started + sent * 0.02 - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()


class FakeCallClient:
    """Stands in for `daily.CallClient`: records calls, answers from its own thread."""

    def __init__(self, event_handler: Any) -> None:
        self.handler = event_handler
        self.room = FakeDailyRoom.current
        self.events = _CallbackThread()
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.renderers: dict[str, Callable[..., Any]] = {}
        self.released = threading.Event()
        self.room.clients.append(self)

    def _done(self, name: str, completion: Any, *result: Any, args: tuple[Any, ...] = ()) -> None:
        self.calls.append((name, args))
        self.events.call(completion, *result)

    def update_subscription_profiles(self, profiles: Any, completion: Any = None) -> None:
        self._done("update_subscription_profiles", completion, None)

    def set_user_name(self, name: str) -> None:
        self.calls.append(("set_user_name", (name,)))

    def join(
        self, url: str, token: str | None, completion: Any = None, client_settings: Any = None
    ) -> None:
        self.calls.append(("join", (url, token)))
        self.room.joined_with.append((url, token))
        if self.room.join_mode == "hang":
            return
        if self.room.join_mode == "error":
            self.events.call(completion, None, "join failed: room not found")
            return
        data = {"participants": {"local": {"id": "bot"}}, "meetingSession": {"id": "meeting"}}
        self.events.call(completion, data, None)
        self.events.call(self.handler.on_call_state_updated, "joined")

    def leave(self, completion: Any = None) -> None:
        self._done("leave", completion, None)
        self.events.call(self.handler.on_call_state_updated, "left")

    def release(self) -> None:
        self.calls.append(("release", ()))
        self.events.stop()
        self.released.set()

    def participants(self) -> dict[str, Any]:
        return {"local": {"id": "bot"}, **{p: {"id": p} for p in self.room.people}}

    def participant_counts(self) -> dict[str, Any]:
        return {"present": 1 + len(self.room.people), "hidden": 0}

    def send_app_message(
        self, message: Any, participant_id: Any = None, completion: Any = None
    ) -> None:
        self.room.bot_messages.append(message)
        self._done("send_app_message", completion, None)

    def update_subscriptions(
        self, participant_settings: Any = None, profile_settings: Any = None, completion: Any = None
    ) -> None:
        self._done("update_subscriptions", completion, None, args=(participant_settings,))

    def update_publishing(self, publishing_settings: Any, completion: Any = None) -> None:
        self._done("update_publishing", completion, None)

    def update_inputs(self, inputs: Any, completion: Any = None) -> None:
        self._done("update_inputs", completion, None)

    def set_audio_renderer(
        self,
        participant_id: str,
        callback: Callable[..., Any],
        audio_source: str = "microphone",
        sample_rate: int = 16000,
        callback_interval_ms: int = 20,
    ) -> None:
        self.calls.append(("set_audio_renderer", (participant_id, audio_source, sample_rate)))
        self.renderers[participant_id] = callback


class FakeAudioSource:
    """Stands in for `daily.CustomAudioSource`: what the bot says lands in `room.bot_audio`."""

    def __init__(self, sample_rate: int, channels: int, auto_silence: bool = True) -> None:
        self.room = FakeDailyRoom.current
        self.sample_rate = sample_rate
        self.channels = channels
        self.room.audio_sources.append(self)

    def write_frames(self, frames: bytes, completion: Any = None) -> None:
        self.room.bot_audio.extend(frames)
        self.room.bot_audio_rate = self.sample_rate
        num_frames = len(frames) // (2 * self.channels)
        if completion is not None:
            # A real track consumes audio at playback speed; so does this one.
            timer = threading.Timer(num_frames / self.sample_rate, completion, (num_frames,))
            timer.daemon = True
            timer.start()


class FakeAudioTrack:
    def __init__(self, source: FakeAudioSource) -> None:
        self.source = source
        self.id = str(uuid.uuid4())


class FakeDaily:
    """Stands in for the `daily.Daily` singleton (init, virtual devices)."""

    @staticmethod
    def init(*_args: Any, **_kwargs: Any) -> None:
        return None

    @staticmethod
    def create_speaker_device(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("voicebot captures each person's own track, not a virtual speaker")

    @staticmethod
    def select_speaker_device(*_args: Any, **_kwargs: Any) -> None:
        return None


class FakeDailyRoom:
    """The room as the test sees it: who joined, what the bot sent and said."""

    current: FakeDailyRoom

    def __init__(self, join_mode: str = "ok") -> None:
        self.join_mode = join_mode
        self.clients: list[FakeCallClient] = []
        self.joined_with: list[tuple[str, str | None]] = []
        self.people: dict[str, _Person] = {}
        self.bot_messages: list[Any] = []
        self.audio_sources: list[FakeAudioSource] = []
        self.bot_audio = bytearray()
        self.bot_audio_rate = 0
        self._lock = threading.Lock()

    def install(self, monkeypatch: pytest.MonkeyPatch) -> FakeDailyRoom:
        import pipecat.transports.daily.transport as daily_transport

        FakeDailyRoom.current = self
        monkeypatch.setattr(daily_transport, "CallClient", FakeCallClient)
        monkeypatch.setattr(daily_transport, "CustomAudioSource", FakeAudioSource)
        monkeypatch.setattr(daily_transport, "CustomAudioTrack", FakeAudioTrack)
        monkeypatch.setattr(daily_transport, "Daily", FakeDaily)
        return self

    @property
    def bot(self) -> FakeCallClient:
        assert self.clients, "no bot has created a CallClient yet"
        return self.clients[-1]

    def person_joins(self, participant_id: str = "person") -> None:
        self.people[participant_id] = _Person(self, participant_id)
        self.bot.events.call(
            self.bot.handler.on_participant_joined, {"id": participant_id, "info": {}}
        )

    def person_leaves(self, participant_id: str = "person", reason: str = "leftCall") -> None:
        person = self.people.pop(participant_id)
        person.stop()
        self.bot.events.call(
            self.bot.handler.on_participant_left, {"id": participant_id, "info": {}}, reason
        )

    def say(self, pcm16k: np.ndarray, participant_id: str = "person") -> None:
        self.people[participant_id].say(pcm16k)

    def app_message(self, message: Any, sender: str = "person") -> None:
        self.bot.events.call(self.bot.handler.on_app_message, message, sender)

    def eject_bot(self) -> None:
        """What Daily does at room or token expiry, or when an owner ejects the bot."""
        self.bot.events.call(self.bot.handler.on_call_state_updated, "left")

    def deliver_audio(self, participant_id: str, pcm: bytes) -> None:
        callback = self.bot.renderers.get(participant_id)
        if callback is not None and not self.bot.released.is_set():
            callback(participant_id, AudioData(pcm, 16000, 1), "microphone")

    def close(self) -> None:
        for person in self.people.values():
            person.stop()
