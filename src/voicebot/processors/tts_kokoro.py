"""Kokoro-82M TTS on the process-wide model: Pipecat's KokoroTTSService, no load per session."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, AsyncIterator
from typing import TYPE_CHECKING, Any

import numpy as np
from pipecat.audio.utils import create_stream_resampler
from pipecat.frames.frames import Frame
from pipecat.services.kokoro.tts import KokoroTTSService, KokoroTTSSettings
from pipecat.services.tts_service import TTSService
from pipecat.transcriptions.language import Language

from voicebot.audio import trim_leading_silence

if TYPE_CHECKING:
    from kokoro_onnx import Kokoro

# espeak-ng (Kokoro's phonemizer) keeps global state: one phonemization at a time.
_PHONEMIZE_LOCK = threading.Lock()


class SharedKokoroTTSService(KokoroTTSService):
    """Kokoro through a `Kokoro` instance shared by every session.

    Pipecat's KokoroTTSService loads (or downloads) the model in `__init__`; this one
    borrows the one the server loaded, on the CUDA or CPU execution provider chosen at
    start-up. Text arrives a sentence (or first clause) at a time; phonemization is
    serialised, the ONNX inference runs concurrently across sessions off the event loop.
    """

    _settings: KokoroTTSSettings

    def __init__(
        self,
        *,
        kokoro: Kokoro,
        voice: str,
        language: str = "en-us",
        speed: float = 1.0,
        **kwargs: Any,
    ) -> None:
        if voice not in kokoro.voices:
            raise ValueError(f"tts.kokoro.voice={voice!r} is not in the voices file")
        # KokoroTTSService.__init__ would load the model files; only TTSService's init is wanted.
        TTSService.__init__(
            self,
            push_start_frame=True,
            push_stop_frames=True,
            settings=KokoroTTSService.Settings(
                model=None, voice=voice, language=Language.EN, speed=speed
            ),
            **kwargs,
        )
        self._kokoro = kokoro
        self._lang = language
        self._resampler = create_stream_resampler()

    def _synthesise(self, text: str) -> tuple[bytes, int]:
        with _PHONEMIZE_LOCK:
            phonemes = self._kokoro.tokenizer.phonemize(text, self._lang)
        speed = self._settings.speed
        audio, rate = self._kokoro.create(
            phonemes,
            voice=str(self._settings.voice),
            speed=speed if isinstance(speed, float) else 1.0,
            is_phonemes=True,
        )
        pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16).tobytes()
        return trim_leading_silence(pcm, rate), rate

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame, None]:
        """Synthesise one sentence and stream it out at the pipeline's sample rate."""
        await self.start_tts_usage_metrics(text)
        try:
            pcm, rate = await asyncio.to_thread(self._synthesise, text)

            async def once() -> AsyncIterator[bytes]:
                yield pcm

            async for frame in self._stream_audio_frames_from_iterator(
                once(), in_sample_rate=rate, context_id=context_id
            ):
                await self.stop_ttfb_metrics()
                yield frame
        except Exception as e:  # onnxruntime / espeak failures surface as plain exceptions
            await self.push_error(error_msg=f"Kokoro synthesis failed: {e}", exception=e)
        finally:
            await self.stop_ttfb_metrics()
