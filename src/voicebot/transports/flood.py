"""Flood control for WebSocket clients: audio no faster than real time, control messages few.

A microphone sends audio at 1x real time; a client pushing it faster (a file sent as fast
as the network allows, a buggy loop) makes the pipeline queue audio it cannot process,
which costs memory and every other session's latency. Each session gets two token
buckets: seconds of audio (refilled at `max_audio_speed` x wall time, holding at most
`audio_burst_secs`, so a client catching up after a network stall is fine) and other
messages (pings, RTVI, refused ones: `max_control_messages_per_sec`, two seconds' worth
of burst). A client that empties one is closed with 1008 and a reason saying what to change.
WebRTC needs none of this: its inbound audio is paced by RTP.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from voicebot.config import ServerSettings

# RFC 6455: "policy violation".
CLOSE_POLICY_VIOLATION = 1008
# A message counts as at least this much audio, so a stream of tiny messages at real
# time (one per sample) cannot cost the server a frame per sample. Browsers' worklets
# send 128 samples at 48 kHz (2.7 ms at 16 kHz), above it.
MIN_AUDIO_MESSAGE_SECS = 0.002


class TokenBucket:
    """`rate` tokens a second, at most `capacity` held; starts full."""

    def __init__(
        self, *, rate: float, capacity: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.capacity = capacity
        self._clock = clock
        self._tokens = capacity
        self._last = clock()
        # Since the bucket was last full: what was spent and when, for the speed in reasons.
        self._full_at = self._last
        self._spent_since_full = 0.0

    def spend(self, amount: float) -> bool:
        """Take `amount`; False (and nothing taken) when the bucket does not hold it."""
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= self.capacity:
            self._full_at, self._spent_since_full = now, 0.0
        self._spent_since_full += amount
        if amount > self._tokens:
            return False
        self._tokens -= amount
        return True

    def recent_rate(self) -> float:
        """What was spent per second since the bucket was last full."""
        elapsed = max(self._clock() - self._full_at, 0.05)
        return self._spent_since_full / elapsed


class FloodGuard:
    """One session's budgets; each check returns None, or the close reason once over."""

    def __init__(
        self,
        *,
        max_audio_speed: float,
        audio_burst_secs: float,
        max_messages_per_sec: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.audio = TokenBucket(rate=max_audio_speed, capacity=audio_burst_secs, clock=clock)
        self.messages = TokenBucket(
            rate=max_messages_per_sec, capacity=2 * max_messages_per_sec, clock=clock
        )

    @classmethod
    def for_server(cls, server: ServerSettings) -> FloodGuard:
        return cls(
            max_audio_speed=server.max_audio_speed,
            audio_burst_secs=server.audio_burst_secs,
            max_messages_per_sec=server.max_control_messages_per_sec,
        )

    def audio_received(self, seconds: float) -> str | None:
        if self.audio.spend(max(seconds, MIN_AUDIO_MESSAGE_SECS)):
            return None
        speed = self.audio.recent_rate()
        return (
            f"audio arrives faster than real time ({speed:.1f}x; the limit is "
            f"{self.audio.rate:g}x): send audio at real-time pace"
        )

    def message_received(self) -> str | None:
        if self.messages.spend(1.0):
            return None
        rate = self.messages.recent_rate()
        return (
            f"too many control messages ({rate:.0f} a second; the limit is "
            f"{self.messages.rate:g}): send pings at most once a second"
        )
