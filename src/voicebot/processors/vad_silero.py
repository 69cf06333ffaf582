"""Silero VAD that borrows the process-wide ONNX session instead of loading its own.

An ONNX session is stateless and safe to run from several threads; the recurrent
state that must not be shared lives in each analyzer's `SileroOnnxModel` wrapper.
"""

from __future__ import annotations

import onnxruntime
from pipecat.audio.vad.silero import SileroOnnxModel, SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADAnalyzer, VADParams


class SileroStream(SileroOnnxModel):
    """`SileroOnnxModel` with per-stream state around a session it does not own."""

    def __init__(self, session: onnxruntime.InferenceSession) -> None:
        # The parent's __init__ would create a new InferenceSession; take the shared one.
        self.session = session
        self.sample_rates = [8000, 16000]
        self.reset_states()


class SharedSileroVADAnalyzer(SileroVADAnalyzer):
    """Pipecat's Silero VAD analyzer over a shared ONNX session (no model load per session)."""

    def __init__(
        self,
        *,
        session: onnxruntime.InferenceSession,
        sample_rate: int | None = None,
        params: VADParams | None = None,
    ) -> None:
        # SileroVADAnalyzer.__init__ loads the model file; only the base init is wanted.
        VADAnalyzer.__init__(self, sample_rate=sample_rate, params=params)
        self._model = SileroStream(session)
        self._windows_since_reset = 0
        self._low_confidence_windows = 0
