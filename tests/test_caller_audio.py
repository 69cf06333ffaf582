"""Caller audio enters the pipeline in pieces of at least `server.audio_in_chunk_ms`."""

from __future__ import annotations

import asyncio

import numpy as np
from pipecat.frames.frames import InputAudioRawFrame, UserAudioRawFrame
from pipecat.transports.base_input import BaseInputTransport
from pipecat.transports.base_transport import TransportParams

from voicebot.transports.caller_audio import join_caller_audio

RATE = 16000


class RecordingInput(BaseInputTransport):
    """An input transport whose own push records what reaches it (Pipecat's queue)."""

    def __init__(self) -> None:
        super().__init__(TransportParams(audio_in_enabled=True, audio_in_sample_rate=RATE))
        self.pushed: list[InputAudioRawFrame] = []

    async def push_audio_frame(self, frame: InputAudioRawFrame) -> None:
        self.pushed.append(frame)


def _frames(ms: int, count: int, *, rate: int = RATE) -> list[InputAudioRawFrame]:
    samples = rate * ms // 1000
    return [
        InputAudioRawFrame(
            audio=np.full(samples, i + 1, np.int16).tobytes(), sample_rate=rate, num_channels=1
        )
        for i in range(count)
    ]


def _joined(ms: int = 40) -> RecordingInput:
    transport_input = RecordingInput()
    join_caller_audio(transport_input, ms)
    return transport_input


async def test_twenty_ms_frames_enter_in_forty_ms_pieces_in_order() -> None:
    transport_input = _joined()
    frames = _frames(20, 6)
    for frame in frames:
        await transport_input.push_audio_frame(frame)
    assert [len(f.audio) for f in transport_input.pushed] == [1280, 1280, 1280]
    assert [f.num_frames for f in transport_input.pushed] == [640, 640, 640]
    samples = np.concatenate([np.frombuffer(f.audio, np.int16) for f in transport_input.pushed])
    assert (
        samples.tolist()
        == np.concatenate([np.frombuffer(f.audio, np.int16) for f in _frames(20, 6)]).tolist()
    )


async def test_long_enough_frames_pass_as_they_are() -> None:
    transport_input = _joined()
    frames = _frames(40, 2) + _frames(60, 1)
    for frame in frames:
        await transport_input.push_audio_frame(frame)
    assert transport_input.pushed == frames


async def test_a_held_frame_goes_on_alone_when_no_more_audio_comes() -> None:
    transport_input = _joined()
    frame = _frames(20, 1)[0]
    await transport_input.push_audio_frame(frame)
    assert transport_input.pushed == []
    for _ in range(100):  # 40 ms is enough; a busy machine may take longer
        if transport_input.pushed:
            break
        await asyncio.sleep(0.02)
    assert transport_input.pushed == [frame]


async def test_a_change_of_format_or_speaker_is_never_joined() -> None:
    transport_input = _joined()
    first = _frames(20, 1)[0]
    other_rate = _frames(20, 1, rate=8000)[0]
    await transport_input.push_audio_frame(first)
    await transport_input.push_audio_frame(other_rate)
    assert transport_input.pushed == [first]
    # Daily's frames carry who spoke; they keep their type and fields when joined.
    user = [
        UserAudioRawFrame(user_id="p1", audio=bytes(320), sample_rate=8000, num_channels=1)
        for _ in range(2)
    ]
    for frame in user:
        await transport_input.push_audio_frame(frame)
    assert transport_input.pushed[1] is other_rate
    joined = transport_input.pushed[2]
    assert isinstance(joined, UserAudioRawFrame) and joined.user_id == "p1"
    assert len(joined.audio) == 640
    # Two people in a Daily room: their frames alternate and are never mixed.
    before = len(transport_input.pushed)
    for speaker in ("p1", "p2", "p1"):
        await transport_input.push_audio_frame(
            UserAudioRawFrame(user_id=speaker, audio=bytes(320), sample_rate=8000, num_channels=1)
        )
    released = transport_input.pushed[before:]
    assert [(f.user_id, len(f.audio)) for f in released] == [("p1", 320), ("p2", 320)]


async def test_zero_passes_every_frame_as_sent() -> None:
    transport_input = _joined(0)
    frames = _frames(20, 3)
    for frame in frames:
        await transport_input.push_audio_frame(frame)
    assert transport_input.pushed == frames
