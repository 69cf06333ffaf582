"""Caller audio enters the pipeline in pieces of at least `server.audio_in_chunk_ms`.

Browsers, Daily and our WebSocket clients send 20 ms of audio at a time. Each piece
costs Pipecat the same Python work whatever its length: a queue and a task wake-up per
processor it passes, observer events, the VAD's thread hand-off. Measured on a 2-core
server (a client streaming silence over /ws), 20 ms pieces cost 9.7% of a core and
40 ms pieces 7.6%. Joining two 20 ms frames before they enter the pipeline halves that
work; the price is that a decision made on a piece's audio (the VAD's stop, the turn's
silence floor) comes up to 20 ms later.

A frame held for joining is pushed on by itself if no more audio comes within the
chunk's length, so a client that stops sending loses nothing.
"""

from __future__ import annotations

import asyncio

from pipecat.frames.frames import InputAudioRawFrame
from pipecat.transports.base_input import BaseInputTransport

from voicebot.pipecat_compat import AudioPush, route_input_audio


def _same_stream(a: InputAudioRawFrame, b: InputAudioRawFrame) -> bool:
    """Whether `b` continues `a`'s audio: same kind of frame, format, source and speaker
    (Daily's frames carry the participant, and a room may have several)."""
    return (
        type(a) is type(b)
        and a.sample_rate == b.sample_rate
        and a.num_channels == b.num_channels
        and a.transport_source == b.transport_source
        and getattr(a, "user_id", None) == getattr(b, "user_id", None)
    )


class CallerAudioJoiner:
    """Joins consecutive audio frames of one stream until they hold `min_ms` of audio."""

    def __init__(self, push: AudioPush, *, min_ms: int) -> None:
        self._push = push
        self._min_ms = min_ms
        self._held: InputAudioRawFrame | None = None
        self._parts: list[bytes] = []
        self._held_bytes = 0
        self._timer: asyncio.TimerHandle | None = None
        self._late: set[asyncio.Task[None]] = set()

    @staticmethod
    def _bytes_per_ms(frame: InputAudioRawFrame) -> float:
        return frame.sample_rate * max(frame.num_channels, 1) * 2 / 1000

    async def add(self, frame: InputAudioRawFrame) -> None:
        held = self._held
        if held is not None and not _same_stream(held, frame):
            await self.release()
            held = None
        if held is None:
            if len(frame.audio) >= self._min_ms * self._bytes_per_ms(frame):
                await self._push(frame)
                return
            self._held, self._parts, self._held_bytes = frame, [frame.audio], len(frame.audio)
            self._timer = asyncio.get_running_loop().call_later(
                self._min_ms / 1000, self._release_late
            )
            return
        self._parts.append(frame.audio)
        self._held_bytes += len(frame.audio)
        if self._held_bytes >= self._min_ms * self._bytes_per_ms(held):
            await self.release()

    async def release(self) -> None:
        """Push what is held now, joined into the first held frame."""
        frame = self._held
        if frame is None:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if len(self._parts) > 1:
            frame.audio = b"".join(self._parts)
            frame.num_frames = len(frame.audio) // (max(frame.num_channels, 1) * 2)
        self._held, self._parts, self._held_bytes = None, [], 0
        await self._push(frame)

    def _release_late(self) -> None:
        # No more audio within the chunk's length: what is held goes on alone.
        self._timer = None
        task = asyncio.get_running_loop().create_task(self.release())
        self._late.add(task)
        task.add_done_callback(self._late.discard)


def join_caller_audio(transport_input: BaseInputTransport, min_ms: int) -> None:
    """Make `transport_input` push caller audio in pieces of at least `min_ms` (0: as sent)."""
    if min_ms <= 0:
        return
    route_input_audio(transport_input, lambda push: CallerAudioJoiner(push, min_ms=min_ms).add)
