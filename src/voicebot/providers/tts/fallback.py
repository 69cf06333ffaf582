"""A TTS service that speaks with a primary provider and, when it fails, with a fallback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

from loguru import logger
from pipecat.frames.frames import (
    ErrorFrame,
    Frame,
    MetricsFrame,
    TTSAudioRawFrame,
)
from pipecat.services.settings import TTSSettings
from pipecat.services.tts_service import TTSService

from voicebot.errors import ProviderError, is_retryable
from voicebot.observability.metrics_data import FallbackMetricsData
from voicebot.providers.breaker import CircuitBreaker
from voicebot.providers.owner import ProviderOwner
from voicebot.providers.tts.sentence import REPLY_PAUSE_LIMIT_S, SentenceTTSService


def is_retryable_frame(frame: ErrorFrame) -> bool:
    """Whether the failure an ErrorFrame reports may pass (its exception says, if it can)."""
    return frame.exception is None or is_retryable(frame.exception)


class FallbackTTSService(ProviderOwner, SentenceTTSService):  # type: ignore[misc]
    """Each sentence goes to `primary`; if it errors, or has produced no audio within
    `first_audio_timeout_secs`, the same sentence is spoken by `fallback` in the same turn.

    The two providers are ordinary Pipecat TTS services owned by this one: it sets them
    up, starts and stops them with itself and only takes their audio. Once the primary
    has spoken part of a sentence, a failure is reported instead (repeating the words
    already heard would be worse). After a failure `breaker` (shared by every session
    when the stage builds it) sends sentences straight to the fallback for its cool-down,
    then lets one try the primary; without one, the next sentence tries it again. A
    failure that is not retryable (a wrong key) keeps this session on the fallback.
    """

    def __init__(
        self,
        *,
        primary: TTSService,
        fallback: TTSService,
        first_audio_timeout_secs: float = 2.0,
        breaker: CircuitBreaker | None = None,
        **kwargs: Any,
    ) -> None:
        # Sentences are spoken inside run_tts, by whichever provider: one context per reply.
        kwargs.setdefault("stop_frame_timeout_s", REPLY_PAUSE_LIMIT_S)
        super().__init__(
            push_start_frame=True,
            push_stop_frames=True,
            settings=TTSSettings(model=None, voice=None, language=None),
            **kwargs,
        )
        self._primary = primary
        self._fallback = fallback
        self._timeout_secs = first_audio_timeout_secs
        self._primary_broken = False
        self._breaker = breaker or CircuitBreaker("tts", primary.name, cooldown_secs=0.0)
        self.fallbacks = 0
        # The provider that spoke the last sentence.
        self.spoken_by: TTSService = primary

    @property
    def providers(self) -> tuple[TTSService, TTSService]:
        return self._primary, self._fallback

    def can_generate_metrics(self) -> bool:
        return True

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame, None]:
        """Speak `text` with the primary, or with the fallback if the primary cannot."""
        await self.start_tts_usage_metrics(text)
        if self._primary_broken or not self._breaker.allow():
            async for spoken in self._speak_with_fallback(text, context_id):
                yield spoken
            return
        spoke = False
        verdict = False
        frames = self._primary.run_tts(text, context_id)
        try:
            async with asyncio.timeout(self._timeout_secs) as deadline:
                async for frame in frames:
                    if isinstance(frame, ErrorFrame):
                        raise ProviderError(frame.error, retryable=is_retryable_frame(frame))
                    if isinstance(frame, TTSAudioRawFrame):
                        if not spoke:
                            spoke = True
                            self.spoken_by = self._primary
                            deadline.reschedule(None)
                            await self.stop_ttfb_metrics()
                        yield frame
            if not spoke:
                raise ProviderError("the primary TTS produced no audio", retryable=True)
            verdict = True
            self._breaker.succeeded()
            return
        except Exception as e:  # any failure of the primary is a reason to use the fallback
            verdict = True
            self._breaker.failed()
            reason = (
                "no audio in time" if isinstance(e, TimeoutError) else str(e) or type(e).__name__
            )
            if spoke:
                await self.push_error(
                    error_msg=f"{self._primary.name} failed mid-sentence: {reason}"
                )
                return
            retryable = is_retryable(e)
            # One that will not pass by itself (a wrong key): the rest of the session
            # goes straight to the fallback instead of paying the primary's failure again.
            self._primary_broken = self._primary_broken or not retryable
            self.fallbacks += 1
            count = FallbackMetricsData(
                processor=self.name, value=self.fallbacks, retryable=retryable
            )
            await self.push_frame(MetricsFrame(data=[count]))
            logger.bind(
                primary=self._primary.name,
                fallback=self._fallback.name,
                reason=reason,
                retryable=retryable,
            ).warning("TTS primary failed: speaking with the fallback")
        finally:
            if not verdict:
                self._breaker.abandoned()  # interrupted: no verdict on the provider
            await frames.aclose()
        async for frame in self._speak_with_fallback(text, context_id):
            yield frame

    async def _speak_with_fallback(self, text: str, context_id: str) -> AsyncGenerator[Frame, None]:
        self.spoken_by = self._fallback
        async for frame in self._fallback.run_tts(text, context_id):
            if isinstance(frame, TTSAudioRawFrame):
                await self.stop_ttfb_metrics()
                yield frame
