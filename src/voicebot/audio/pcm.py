"""Small PCM helpers: leading-silence trimming for TTS, the voiced-sample threshold."""

from __future__ import annotations

import numpy as np

# Samples quieter than this (about -46 dBFS) count as silence before speech starts.
SILENCE_THRESHOLD = 160
KEEP_BEFORE_SPEECH_S = 0.01
# Samples louder than this count as voiced when timing a turn from the last voiced
# sample (the client and the server's turn timeline use the same threshold).
VOICED_THRESHOLD_DBFS = -40.0
_VOICED_LEVEL = int(32767 * 10 ** (VOICED_THRESHOLD_DBFS / 20))


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


def is_voiced(pcm16: bytes) -> bool:
    """Whether any sample of `pcm16` is louder than VOICED_THRESHOLD_DBFS."""
    samples = np.frombuffer(pcm16, dtype=np.int16)
    # Two reductions, no copy: it runs on every 20 ms of every caller's audio.
    return bool(samples.size) and (
        int(samples.max()) > _VOICED_LEVEL or int(samples.min()) < -_VOICED_LEVEL
    )


def voiced_samples(samples: np.ndarray) -> np.ndarray:
    """Indices of the int16 `samples` louder than VOICED_THRESHOLD_DBFS."""
    return np.flatnonzero((samples > _VOICED_LEVEL) | (samples < -_VOICED_LEVEL))


def quiet_after_voice(pcm16: bytes) -> int | None:
    """How many samples of `pcm16` follow its last voiced one; None: none is voiced.

    Caller audio enters the pipeline in 40 ms pieces (`server.audio_in_chunk_ms`), so a
    pause counted from the end of the piece that holds the last voiced sample would
    start up to a piece late."""
    if not is_voiced(pcm16):  # the usual case in a pause, without an index array
        return None
    samples = np.frombuffer(pcm16, dtype=np.int16)
    return int(samples.size - 1 - voiced_samples(samples)[-1])
