"""An energy (RMS level) VAD: no model at all, for hosts where even Silero is too much."""

from __future__ import annotations

import numpy as np
from pipecat.audio.vad.vad_analyzer import VADParams

from voicebot.audio.barge_in import BargeInGate, window_dbfs
from voicebot.audio.vad_on_loop import OnLoopVADAnalyzer
from voicebot.pipecat_compat import vad_speech_started

# Speech confidence rises linearly from FLOOR_DBFS (0) to CEILING_DBFS (1). Quiet rooms
# sit below -55 dBFS; close-mic speech peaks around -20 dBFS.
FLOOR_DBFS = -50.0
CEILING_DBFS = -25.0


class EnergyVADAnalyzer(OnLoopVADAnalyzer):
    """Voice activity from the level of each 20 ms window.

    Cheaper than Silero and fooled by loud noise; Pipecat's VAD state machine
    (start_secs, stop_secs, min_volume) runs on top of it exactly as on Silero, and so
    do the barge-in params (`BargeInVADParams`).
    """

    def __init__(self, *, sample_rate: int | None = None, params: VADParams | None = None) -> None:
        self._barge_in = BargeInGate()
        super().__init__(sample_rate=sample_rate, params=params)
        self._barge_in.update(self.params)

    def num_frames_required(self) -> int:
        return int(self.sample_rate * 0.02) if self.sample_rate else 320

    def set_params(self, params: VADParams) -> None:
        super().set_params(params)
        self._barge_in.update(params)

    def voice_confidence(self, buffer: bytes) -> float:
        dbfs = window_dbfs(buffer)
        confidence = float(np.clip((dbfs - FLOOR_DBFS) / (CEILING_DBFS - FLOOR_DBFS), 0.0, 1.0))
        return self._barge_in.apply(
            confidence,
            buffer,
            sample_rate=self.sample_rate,
            speech_started=vad_speech_started(self),
        )
