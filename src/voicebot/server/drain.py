"""Graceful drain on SIGTERM: finish the turns in progress, then close sessions and exit 0.

RunPod, Cloud Run, Kubernetes and `docker stop` send SIGTERM before they kill a
container. uvicorn's own handler closes every WebSocket with 1012 at once, cutting a
reply mid-word, and re-raises the signal (exit status -15). `DrainingServer` instead
sets `Drain.draining` (/health answers 503 `draining`, new sessions are refused), waits
until no session is in a turn or `server.drain_secs` pass, closes each session (1001
"server restarting" on WebSockets, a hang-up on WebRTC) and exits 0. A second
SIGTERM or SIGINT stops at once.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import uvicorn
from loguru import logger
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    LLMContextFrame,
    LLMFullResponseEndFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.observers.base_observer import BaseObserver, FramePushed
from pipecat.processors.aggregators.llm_response_universal import LLMAssistantAggregator
from pipecat.processors.frame_processor import FrameDirection

# Frames of one turn follow each other within this; a session this quiet is between turns.
SETTLE_SECS = 0.5
# A turn whose transcript turns out empty is never answered: wait this long for its reply.
REPLY_START_SECS = 5.0
# After the drain, how long closed sessions get to wind down before the server stops anyway.
CLOSE_WAIT_SECS = 5.0

Close = Callable[[], Awaitable[None]]


class TurnActivity(BaseObserver):
    """Whether one session is in a turn: the user speaking, STT, the LLM, TTS or bot audio."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, **kwargs: Any) -> None:
        super().__init__(observe_every_push=False, **kwargs)
        self._clock = clock
        self._flags: dict[str, bool] = {}
        self._changed_at = clock()
        self._turn_ended_at: float | None = None
        self._requested = False  # whether this user turn's reply was asked of the LLM

    async def on_push_frame(self, data: FramePushed) -> None:
        if data.direction != FrameDirection.DOWNSTREAM:
            return
        frame = data.frame
        if isinstance(frame, LLMContextFrame) and isinstance(data.source, LLMAssistantAggregator):
            return  # the spoken reply recorded at the end of the pipeline, not a new request
        for kind, started, stopped in _PAIRS:
            if isinstance(frame, (started, stopped)):
                self._flags[kind] = isinstance(frame, started)
                self._changed_at = self._clock()
        if isinstance(frame, UserStartedSpeakingFrame):
            self._turn_ended_at, self._requested = None, False
        elif isinstance(frame, LLMContextFrame):
            self._turn_ended_at, self._requested = None, True
        elif isinstance(frame, UserStoppedSpeakingFrame) and not self._requested:
            self._turn_ended_at = self._clock()

    @property
    def busy(self) -> bool:
        now = self._clock()
        if any(self._flags.values()) or now - self._changed_at < SETTLE_SECS:
            return True
        # A finished user turn whose reply has not started yet (STT, then the LLM).
        return self._turn_ended_at is not None and now - self._turn_ended_at < REPLY_START_SECS


_PAIRS = (
    ("vad", VADUserStartedSpeakingFrame, VADUserStoppedSpeakingFrame),
    ("user", UserStartedSpeakingFrame, UserStoppedSpeakingFrame),
    ("llm", LLMContextFrame, LLMFullResponseEndFrame),
    ("tts", TTSStartedFrame, TTSStoppedFrame),
    ("bot", BotStartedSpeakingFrame, BotStoppedSpeakingFrame),
)


class Drain:
    """The server's sessions as the drain sees them, and whether it has begun."""

    def __init__(self) -> None:
        self.draining = False
        self._sessions: dict[int, tuple[TurnActivity, Close]] = {}

    @contextmanager
    def track(self, close: Close) -> Iterator[TurnActivity]:
        """Register a session while the block runs; add the observer it yields to its pipeline.

        `close` ends the session when the drain is over (a WebSocket closes with 1001).
        """
        activity = TurnActivity()
        self._sessions[id(activity)] = (activity, close)
        try:
            yield activity
        finally:
            self._sessions.pop(id(activity), None)

    @property
    def sessions(self) -> int:
        return len(self._sessions)

    def busy_sessions(self) -> int:
        return sum(activity.busy for activity, _ in self._sessions.values())

    async def run(self, drain_secs: float) -> None:
        """Refuse new sessions, let turns finish (up to `drain_secs`), then close every session."""
        self.draining = True
        log = logger.bind(sessions=self.sessions, drain_secs=drain_secs)
        log.info("draining: refusing new sessions, letting turns in progress finish")
        deadline = time.monotonic() + drain_secs
        # Polled: "busy" also depends on how long a session has been quiet.
        while self.busy_sessions() and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        if self.busy_sessions():
            logger.bind(cut=self.busy_sessions()).warning("drain time up: cutting turns short")
        closes = [close() for _, close in list(self._sessions.values())]
        await asyncio.gather(*closes, return_exceptions=True)
        deadline = time.monotonic() + CLOSE_WAIT_SECS
        while self._sessions and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        logger.bind(closed=len(closes)).info("drained: sessions closed")


class DrainingServer(uvicorn.Server):
    """uvicorn's server: SIGTERM/SIGINT start `drain` instead of closing sockets with 1012."""

    def __init__(self, config: uvicorn.Config, *, drain: Drain, drain_secs: float) -> None:
        super().__init__(config)
        self.drain = drain
        self.drain_secs = drain_secs
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_task: asyncio.Task[None] | None = None
        self._signalled = False

    async def serve(self, sockets: Any = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Not recorded as uvicorn does: it would raise the signal again on the way out.
        if self._loop is None or self._signalled or self.should_exit:
            logger.bind(signal=signal.Signals(sig).name).info("second signal: stopping now")
            self.force_exit = True
            super().handle_exit(sig, frame)
            return
        self._signalled = True
        self._loop.call_soon_threadsafe(self._start_drain)

    def _start_drain(self) -> None:
        if self._drain_task is None:
            self._drain_task = asyncio.ensure_future(self._drain_then_exit())

    async def _drain_then_exit(self) -> None:
        try:
            await self.drain.run(self.drain_secs)
        finally:
            self.should_exit = True
