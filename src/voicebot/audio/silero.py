"""Silero VAD that borrows the process-wide ONNX session instead of loading its own.

An ONNX session is stateless and safe to run from several threads; the recurrent
state that must not be shared lives in each analyzer's `SileroOnnxModel` wrapper.
"""

from __future__ import annotations

import numpy as np
import onnxruntime
from pipecat.audio.vad.silero import SileroOnnxModel, SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADParams

from voicebot.audio.barge_in import BargeInGate
from voicebot.audio.vad_on_loop import OnLoopVADAnalyzer
from voicebot.pipecat_compat import (
    adopt_silero_session,
    init_shared_silero_analyzer,
    vad_speech_started,
)


class SileroStream(SileroOnnxModel):
    """`SileroOnnxModel` with per-stream state around a session it does not own."""

    def __init__(self, session: onnxruntime.InferenceSession) -> None:
        # The parent's __init__ would create a new InferenceSession; take the shared one.
        adopt_silero_session(self, session)


class SharedSileroVADAnalyzer(OnLoopVADAnalyzer, SileroVADAnalyzer):
    """Pipecat's Silero VAD analyzer over a shared ONNX session (no model load per session).

    Honours `BargeInVADParams` (see audio/barge_in.py), runs on the event loop and reports
    each chunk's state to `silence_onset` when one is set (audio/vad_on_loop.py).
    """

    def __init__(
        self,
        *,
        session: onnxruntime.InferenceSession,
        sample_rate: int | None = None,
        params: VADParams | None = None,
    ) -> None:
        self._barge_in = BargeInGate()
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
