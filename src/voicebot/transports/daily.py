"""Pipecat's DailyTransport for a bot in one room, and the rules that end its session.

A Daily session must never leave a bot behind: it ends when the join fails or does not
finish in time, when the call state becomes `left` (ejected, room or token expired),
and when the last person has been gone for the grace period.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from loguru import logger
from pipecat.observers.base_observer import BaseObserver
from pipecat.pipeline.worker import PipelineWorker
from pipecat.transports.daily.transport import DailyParams, DailyTransport

from voicebot.config import DailySettings, Settings
from voicebot.models import SharedModels
from voicebot.observability.metrics_observer import SessionMetrics
from voicebot.protocol import INPUT_SAMPLE_RATE
from voicebot.providers.tts.stage import output_sample_rate
from voicebot.session import run_session


def daily_transport(
    room_url: str, token: str | None, settings: Settings, *, audio_out_sample_rate: int
) -> DailyTransport:
    """A bot participant for `room_url`: one audio track per person in, the TTS rate out."""
    params = DailyParams(
        api_url=settings.daily.api_url,
        audio_in_enabled=True,
        audio_in_sample_rate=INPUT_SAMPLE_RATE,
        audio_in_user_tracks=True,
        audio_out_enabled=True,
        audio_out_sample_rate=audio_out_sample_rate,
        camera_out_enabled=False,
        video_out_enabled=False,
    )
    return DailyTransport(room_url, token, settings.daily.bot_name, params)


class DailySessionRules:
    """Decides when a Daily session is over, and cancels its worker then."""

    def __init__(self, transport: DailyTransport, settings: DailySettings, *, log: Any) -> None:
        self._transport = transport
        self._settings = settings
        self._log = log
        self._worker: PipelineWorker | None = None
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.joined = False
        self.ended_because: str | None = None

    def __call__(self, worker: PipelineWorker) -> None:
        self._worker = worker
        transport = self._transport
        transport.add_event_handler("on_joined", self._on_joined)
        transport.add_event_handler("on_error", self._on_error)
        transport.add_event_handler("on_call_state_updated", self._on_call_state_updated)
        transport.add_event_handler("on_participant_joined", self._on_participant_joined)
        transport.add_event_handler("on_participant_left", self._on_participant_left)
        self._start_timer("join", self._settings.join_timeout_secs, "join timed out")

    def stop(self) -> None:
        """Drop pending timers (the session has ended)."""
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()

    async def _on_joined(self, _transport: DailyTransport, _data: Mapping[str, Any]) -> None:
        self.joined = True
        self._cancel_timer("join")
        self._log.info("bot joined the daily room")

    async def _on_error(self, _transport: DailyTransport, error: str) -> None:
        if not self.joined:
            await self.end(f"join failed: {error}")

    async def _on_call_state_updated(self, _transport: DailyTransport, state: str) -> None:
        if state == "left":
            await self.end("left the call")

    async def _on_participant_joined(
        self, transport: DailyTransport, participant: Mapping[str, Any]
    ) -> None:
        self._cancel_timer("empty")
        # Audio of every person arrives on its own track (audio_in_user_tracks);
        # DailyTransport starts capturing it when the participant joins.
        self._log.bind(participant=participant.get("id")).info("participant joined")

    async def _on_participant_left(
        self, transport: DailyTransport, participant: Mapping[str, Any], reason: str
    ) -> None:
        gone = participant.get("id")
        self._log.bind(participant=gone, reason=reason).info("participant left")
        try:
            present = set(transport.participants())
        except Exception:  # the client is already released: nobody is left
            present = set()
        if not present - {"local", gone}:
            self._start_timer("empty", self._settings.empty_room_grace_secs, "room empty")

    def _start_timer(self, name: str, delay_secs: float, reason: str) -> None:
        self._cancel_timer(name)
        loop = asyncio.get_running_loop()
        self._timers[name] = loop.call_later(delay_secs, self._end_soon, reason)

    def _cancel_timer(self, name: str) -> None:
        handle = self._timers.pop(name, None)
        if handle is not None:
            handle.cancel()

    def _end_soon(self, reason: str) -> None:
        task = asyncio.get_running_loop().create_task(self.end(reason))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def end(self, reason: str) -> None:
        """End the session once, whatever asked first."""
        if self.ended_because is not None or self._worker is None:
            return
        self.ended_because = reason
        self.stop()
        self._log.bind(reason=reason).info("ending daily session")
        await self._worker.cancel(reason=reason)


async def run_daily_session(
    room_url: str,
    token: str | None,
    models: SharedModels,
    settings: Settings,
    *,
    session_id: str,
    metrics: SessionMetrics | None = None,
    observers: Sequence[BaseObserver] = (),
) -> str | None:
    """Join `room_url` as the bot and converse until the session ends; returns why it ended."""
    log = logger.bind(session=session_id)
    transport = daily_transport(
        room_url, token, settings, audio_out_sample_rate=output_sample_rate(settings, models)
    )
    rules = DailySessionRules(transport, settings.daily, log=log)
    try:
        # client-js's Daily transport speaks RTVI over app messages: client-ready -> bot-ready.
        await run_session(
            transport,
            models,
            settings,
            session_id=session_id,
            observers=observers,
            enable_rtvi=True,
            lifecycle=rules,
            metrics=metrics,
        )
    finally:
        rules.stop()
    return rules.ended_because
