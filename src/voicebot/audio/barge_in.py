"""How the VAD listens while the bot speaks: a shorter start window at a higher confidence,
and a level floor per analysis window in place of Pipecat's smoothed volume, which lags
~180 ms behind an onset.

Silero's confidence is what tells words (0.97 and more within 0.2 s of their onset) from a
cough, clicks or a noise burst (below 0.3). The floor is the level of the window's speech
band (above `SPEECH_BAND_LOW_HZ`): it keeps a distant voice (a TV, someone across the room)
from counting, and a mains hum or a rumble, whatever its level, too. Silero scores a hum's
onset 0.96-0.98 for a fifth of a second when it starts at one place in its 32 ms window
(samples 222-233 of 512), so no start confidence keeps the hum out on its own; its speech
band stays below -60 dBFS where words reach -10 to -18. `processors/barge_in.py` switches a
session's VAD to these params and back.
"""

from __future__ import annotations

import math

import numpy as np
from pipecat.audio.vad.vad_analyzer import VADParams


class BargeInVADParams(VADParams):
    """`VADParams` with a stricter start, which voicebot's VAD analyzers honour.

    Parameters:
        start_confidence: Until speech has started, a window counts toward `start_secs`
            only at this confidence; once it has, `confidence` decides as usual, so the
            person's speech ends as any other does. None: `confidence` throughout.
        min_level_dbfs: Analysis windows quieter than this (RMS, dBFS) are not speech,
            whatever the model says, measured on the speech band
            (`speech_band_dbfs`). None: no floor.
    """

    start_confidence: float | None = None
    min_level_dbfs: float | None = None


def barge_in_params(
    normal: VADParams, *, start_secs: float, start_confidence: float, min_level_dbfs: float
) -> BargeInVADParams:
    """`normal` with a shorter, stricter start, and the level floor instead of `min_volume`.

    `confidence` and `stop_secs` stay as they are, so a turn that starts as an
    interruption ends as any other turn does.
    """
    return BargeInVADParams(
        confidence=normal.confidence,
        start_secs=start_secs,
        stop_secs=normal.stop_secs,
        min_volume=0.0,
        start_confidence=start_confidence,
        min_level_dbfs=min_level_dbfs,
    )


# Voices carry their formants above this; mains hum (50/60 Hz and its first harmonics) and
# rumble sit below it.
SPEECH_BAND_LOW_HZ = 500.0


def speech_band_dbfs(buffer: bytes, sample_rate: int) -> float:
    """RMS level in dBFS of a window of PCM16 audio above `SPEECH_BAND_LOW_HZ`.

    Hann-windowed, so a loud tone below the band does not leak into it.
    """
    samples = np.frombuffer(buffer, dtype=np.int16).astype(np.float32) / 32768.0
    if samples.size == 0:
        return -math.inf
    taper = np.hanning(samples.size).astype(np.float32)
    spectrum = np.fft.rfft(samples * taper)
    in_band = np.fft.rfftfreq(samples.size, 1 / sample_rate) >= SPEECH_BAND_LOW_HZ
    # Parseval, with the taper's energy taken out: the band's mean square.
    power = 2 * float(np.sum(np.abs(spectrum[in_band]) ** 2))
    mean_square = power / (samples.size * float(np.sum(taper**2)))
    return 10 * math.log10(mean_square) if mean_square > 0 else -math.inf


def window_dbfs(buffer: bytes) -> float:
    """RMS level of a window of PCM16 audio in dBFS (-inf for digital silence)."""
    samples = np.frombuffer(buffer, dtype=np.int16).astype(np.float32) / 32768.0
    if samples.size == 0:
        return -math.inf
    rms = float(np.sqrt(np.mean(samples**2)))
    return 20 * math.log10(rms) if rms > 0 else -math.inf


class BargeInGate:
    """What an analyzer does to each window's confidence under `BargeInVADParams`."""

    def __init__(self) -> None:
        self._params: BargeInVADParams | None = None

    def update(self, params: VADParams) -> None:
        self._params = params if isinstance(params, BargeInVADParams) else None

    def apply(
        self, confidence: float, buffer: bytes, *, sample_rate: int, speech_started: bool
    ) -> float:
        """`confidence`, or 0 where the window is too quiet or too unsure to start speech."""
        params = self._params
        if params is None:
            return confidence
        if (
            params.min_level_dbfs is not None
            and speech_band_dbfs(buffer, sample_rate) < params.min_level_dbfs
        ):
            return 0.0
        if (
            not speech_started
            and params.start_confidence is not None
            and confidence < params.start_confidence
        ):
            return 0.0
        return confidence
