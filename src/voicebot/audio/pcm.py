"""Small PCM helpers shared by the TTS services."""

from __future__ import annotations

import numpy as np

# Samples quieter than this (about -46 dBFS) count as silence before speech starts.
SILENCE_THRESHOLD = 160
KEEP_BEFORE_SPEECH_S = 0.01


def trim_leading_silence(pcm16: bytes, sample_rate: int) -> bytes:
    """Drop the silence TTS engines put before the first word, keeping 10 ms of lead-in.

    Returns b"" when the whole chunk is silent, so the caller can keep trimming the next.
    """
    samples = np.frombuffer(pcm16, dtype=np.int16)
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > SILENCE_THRESHOLD)
    if loud.size == 0:
        return b""
    start = max(0, int(loud[0]) - int(KEEP_BEFORE_SPEECH_S * sample_rate))
    return samples[start:].tobytes()
