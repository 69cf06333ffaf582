"""While the bot speaks, the session's VAD listens with the barge-in params (audio/barge_in.py)."""

from __future__ import annotations

from typing import Any

from pipecat.audio.vad.vad_analyzer import VADParams
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    Frame,
    VADParamsUpdateFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor


class BargeInVADSwitch(FrameProcessor):
    """Sends the user aggregator's VAD `barge_in` params while the bot speaks, `normal` otherwise.

    Placed after the user aggregator: the bot's speaking frames come up from the output
    transport, the VAD's come down from the aggregator, and the `VADParamsUpdateFrame`
    goes up to the aggregator (as Pipecat's IVR navigator sends its own), which applies it
    between two audio chunks. A switch waits until the VAD reports the person quiet:
    Pipecat's analyzer restarts its state on new params, which mid-speech would end the
    person's speech early.
    """

    def __init__(self, *, normal: VADParams, barge_in: VADParams, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._normal = normal
        self._barge_in = barge_in
        self._applied = normal
        self._bot_speaking = False
        self._user_speaking = False
        self.switches = 0

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)
        if isinstance(frame, BotStartedSpeakingFrame):
            self._bot_speaking = True
        elif isinstance(frame, BotStoppedSpeakingFrame):
            self._bot_speaking = False
        elif isinstance(frame, VADUserStartedSpeakingFrame):
            self._user_speaking = True
        elif isinstance(frame, VADUserStoppedSpeakingFrame):
            self._user_speaking = False
        else:
            return
        await self._maybe_switch()

    async def _maybe_switch(self) -> None:
        wanted = self._barge_in if self._bot_speaking else self._normal
        if wanted is self._applied or self._user_speaking:
            return
        self._applied = wanted
        self.switches += 1
        await self.push_frame(VADParamsUpdateFrame(params=wanted), FrameDirection.UPSTREAM)
