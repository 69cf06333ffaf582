"""faster-whisper STT for Pipecat: a segmented STT service over the process-wide WhisperEngine."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import numpy as np
from loguru import logger
from pipecat.frames.frames import Frame, MetricsFrame, TranscriptionFrame
from pipecat.services.whisper.stt import WhisperSTTService, WhisperSTTSettings
from pipecat.transcriptions.language import Language
from pipecat.utils.time import time_now_iso8601

from voicebot.observability.metrics_data import RTFMetricsData
from voicebot.stt_engine import WhisperEngine


class FasterWhisperSTTService(WhisperSTTService):
    """Pipecat's segmented Whisper service, transcribing through a shared `WhisperEngine`.

    Pipecat buffers the user's audio between VAD start and stop and hands the segment to
    `run_stt`. The parent loads a model in `__init__` (`_load`); here `_load` adopts the
    engine's model, so a session costs no model load, and utterances from concurrent
    sessions are batched by the engine. Each transcript reports its real-time factor.
    """

    _settings: WhisperSTTSettings

    def __init__(self, *, engine: WhisperEngine, language: str = "en", **kwargs: Any) -> None:
        self._engine = engine
        super().__init__(
            # Whisper tiny.en on 2 CPU cores: ~0.3 s for a short question, ~0.6 s worst case.
            ttfs_p99_latency=0.6,
            settings=WhisperSTTService.Settings(
                model=engine.description["model"],
                language=Language(language),
                no_speech_prob=engine.options.no_speech_prob,
            ),
            **kwargs,
        )

    def _load(self) -> None:
        self._model = self._engine.model
        unsupported = self._unsupported_language()
        if unsupported:
            raise ValueError(unsupported)

    async def run_stt(self, audio: bytes) -> AsyncGenerator[Frame, None]:
        """Transcribe one VAD-delimited segment of 16-bit PCM."""
        samples = np.frombuffer(audio, dtype=np.int16).astype(np.float32) / 32768.0
        await self.start_processing_metrics()
        try:
            result = await self._engine.transcribe(samples)
        except Exception as e:  # ctranslate2 raises RuntimeError for device/compute failures
            await self.push_error(error_msg=f"Whisper transcription failed: {e}", exception=e)
            return
        finally:
            await self.stop_processing_metrics()
        if result.batch_size:
            rtf = RTFMetricsData(processor=self.name, model=result.model, value=result.rtf)
            await self.push_frame(MetricsFrame(data=[rtf]))
        if not result.text:
            return
        logger.bind(stt_chars=len(result.text), batch=result.batch_size).debug("transcribed")
        language = Language(result.language) if result.language else None
        await self._handle_transcription(result.text, True, language)
        yield TranscriptionFrame(result.text, self._user_id, time_now_iso8601(), language)
