"""What reaches Whisper: utterances capped in length, and only those Silero hears speech in."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from loguru import logger

from voicebot.audio.silero import SileroStream

if TYPE_CHECKING:
    import onnxruntime

SAMPLE_RATE = 16000
_VAD_WINDOW = 512


class SpeechGate:
    """Caps an utterance at `max_secs` and tells speech from silence and noise.

    An utterance is speech when at least `min_speech_windows` Silero windows (32 ms each)
    score above 0.5; without a VAD session everything non-empty counts as speech.
    """

    def __init__(
        self,
        vad_session: onnxruntime.InferenceSession | None,
        *,
        max_secs: float,
        min_speech_windows: int,
    ) -> None:
        self._vad_session = vad_session
        self._limit = int(max_secs * SAMPLE_RATE)
        self._max_secs = max_secs
        self._min_windows = min_speech_windows

    def cap(self, samples: np.ndarray) -> tuple[np.ndarray, bool]:
        """The first `max_secs` of `samples`, and whether anything was cut."""
        if len(samples) <= self._limit:
            return samples, False
        logger.bind(duration_s=round(len(samples) / SAMPLE_RATE, 1), cap_s=self._max_secs).warning(
            "utterance longer than stt.max_utterance_secs: transcribing only its start"
        )
        return samples[: self._limit], True

    def is_speech(self, samples: np.ndarray) -> bool:
        if len(samples) == 0:
            return False
        if self._vad_session is None:
            return True
        stream = SileroStream(self._vad_session)
        voiced = 0
        for offset in range(0, len(samples) - _VAD_WINDOW + 1, _VAD_WINDOW):
            window = samples[offset : offset + _VAD_WINDOW]
            if float(stream(window, SAMPLE_RATE)[0][0]) > 0.5:
                voiced += 1
                if voiced >= self._min_windows:
                    return True
        return False
