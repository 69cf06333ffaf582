"""An energy (RMS level) VAD: no model at all, for hosts where even Silero is too much."""

from __future__ import annotations

import numpy as np
from pipecat.audio.vad.vad_analyzer import VADAnalyzer, VADParams

# Speech confidence rises linearly from FLOOR_DBFS (0) to CEILING_DBFS (1). Quiet rooms
# sit below -55 dBFS; close-mic speech peaks around -20 dBFS.
FLOOR_DBFS = -50.0
CEILING_DBFS = -25.0


class EnergyVADAnalyzer(VADAnalyzer):
    """Voice activity from the level of each 20 ms window.

    Cheaper than Silero and fooled by loud noise; Pipecat's VAD state machine
    (start_secs, stop_secs, min_volume) runs on top of it exactly as on Silero.
    """

    def __init__(self, *, sample_rate: int | None = None, params: VADParams | None = None) -> None:
        super().__init__(sample_rate=sample_rate, params=params)

    def num_frames_required(self) -> int:
        return int(self.sample_rate * 0.02) if self.sample_rate else 320

    def voice_confidence(self, buffer: bytes) -> float:
        samples = np.frombuffer(buffer, dtype=np.int16).astype(np.float32) / 32768.0
        if samples.size == 0:
            return 0.0
        rms = float(np.sqrt(np.mean(samples**2)))
        dbfs = 20 * np.log10(max(rms, 1e-9))
        return float(np.clip((dbfs - FLOOR_DBFS) / (CEILING_DBFS - FLOOR_DBFS), 0.0, 1.0))
