"""Silero VAD that borrows the process-wide ONNX session instead of loading its own.

An ONNX session is stateless and safe to run from several threads; the recurrent
state that must not be shared lives in each analyzer's `SileroOnnxModel` wrapper.
"""

from __future__ import annotations

import numpy as np
import onnxruntime
from pipecat.audio.vad.silero import SileroOnnxModel, SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADParams, VADState

from voicebot.audio.barge_in import BargeInGate
from voicebot.audio.pcm import is_voiced
from voicebot.audio.silence_onset import SilenceOnset
from voicebot.pipecat_compat import (
    adopt_silero_session,
    buffer_short_of_vad_window,
    init_shared_silero_analyzer,
    vad_speech_started,
)


class SileroStream(SileroOnnxModel):
    """`SileroOnnxModel` with per-stream state around a session it does not own."""

    def __init__(self, session: onnxruntime.InferenceSession) -> None:
        # The parent's __init__ would create a new InferenceSession; take the shared one.
        adopt_silero_session(self, session)


class SharedSileroVADAnalyzer(SileroVADAnalyzer):
    """Pipecat's Silero VAD analyzer over a shared ONNX session (no model load per session).

    Honours `BargeInVADParams` (see audio/barge_in.py) and reports each chunk's state to
    `silence_onset` when one is set (see audio/silence_onset.py).
    """

    def __init__(
        self,
        *,
        session: onnxruntime.InferenceSession,
        sample_rate: int | None = None,
        params: VADParams | None = None,
    ) -> None:
        self._barge_in = BargeInGate()
        # Told each chunk's state, so the STT can start on a pause before the stop.
        self.silence_onset: SilenceOnset | None = None
        # SileroVADAnalyzer.__init__ loads the model file; this borrows the shared session.
        init_shared_silero_analyzer(
            self, SileroStream(session), sample_rate=sample_rate, params=params
        )
        self._barge_in.update(self.params)

    def set_params(self, params: VADParams) -> None:
        super().set_params(params)
        self._barge_in.update(params)

    def voice_confidence(self, buffer: bytes) -> float:
        # The model hears every window, so its recurrent state stays continuous.
        confidence = np.asarray(super().voice_confidence(buffer)).item()
        return self._barge_in.apply(
            float(confidence),
            buffer,
            sample_rate=self.sample_rate,
            speech_started=vad_speech_started(self),
        )

    async def analyze_audio(self, buffer: bytes) -> VADState:
        # Pipecat hands every chunk to the analyzer's thread; a 20 ms chunk that does not
        # complete a 32 ms window only joins the buffer, so that costs a thread hand-off
        # (two wake-ups) for nothing on 3 chunks in 8. The model still runs off the loop.
        state = buffer_short_of_vad_window(self, buffer)
        if state is None:
            state = await super().analyze_audio(buffer)
        if self.silence_onset is not None:
            self.silence_onset.observe(
                state, len(buffer) / 2 / self.sample_rate, voiced=is_voiced(buffer)
            )
        return state
