"""Whisper that encodes a shorter window than its 30 seconds when the audio allows it.

faster-whisper pads every utterance's features with zeros to Whisper's 30 s window
(`pad_or_trim`), and the encoder then costs the same for a 2 s question as for 30 s of
speech: ~420 of the ~530 ms tiny.en takes on two CPU cores. CTranslate2's encoder takes
shorter inputs, and its cost follows their length (10 s: ~65 ms). With
`window_secs` under 30, `ShortWindowWhisperModel.encode` cuts the padding so the encoder
sees `window_secs`, or the audio and `MIN_PADDING_SECS` after it if that is longer.

The padding kept matters: Whisper tiny.en, given a window only a little longer than the
audio, repeated the utterance until its token limit (5 s windows on the bundled 1.6-1.8 s
questions; the audio plus 1 s on 6 of 16 unseen utterances). 15 s windows gave the same
words as the full window on the bundled questions and the same word error rate on the
unseen voices' tune half (README_PIPECAT.md, "A shorter encoder window").
"""

from __future__ import annotations

from typing import Any

import numpy as np
from faster_whisper import WhisperModel

# Mel frames per second of audio (10 ms hop); Whisper's window is 3000 frames.
FRAMES_PER_SECOND = 100
# The least padding kept after the audio, whatever the window.
MIN_PADDING_SECS = 10.0


def audio_frames(features: np.ndarray) -> int:
    """Frames up to the last one of audio: `pad_or_trim` pads with exact zeros."""
    voiced = np.flatnonzero(np.any(features != 0, axis=tuple(range(features.ndim - 1))))
    return int(voiced[-1]) + 1 if len(voiced) else 0


def window_frames(features: np.ndarray, window_secs: float) -> int:
    """How many frames of `features` to encode: `window_secs`, or the audio and
    `MIN_PADDING_SECS` if longer; an even number, never more than there are."""
    total = int(features.shape[-1])
    keep = max(
        round(window_secs * FRAMES_PER_SECOND),
        audio_frames(features) + round(MIN_PADDING_SECS * FRAMES_PER_SECOND),
    )
    keep += keep % 2
    return min(total, keep)


class ShortWindowWhisperModel(WhisperModel):  # type: ignore[misc]
    """A `WhisperModel` whose encoder sees `window_secs` (30: Whisper's whole window)."""

    def __init__(self, *args: Any, window_secs: float = 30.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.window_secs = window_secs

    def encode(self, features: np.ndarray) -> Any:
        if self.window_secs < 30:
            features = np.ascontiguousarray(
                features[..., : window_frames(features, self.window_secs)]
            )
        return super().encode(features)
