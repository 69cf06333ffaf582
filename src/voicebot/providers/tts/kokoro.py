"""Kokoro-82M TTS on the process-wide model: Pipecat's KokoroTTSService, no load per session."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from loguru import logger
from pipecat.audio.utils import create_stream_resampler
from pipecat.frames.frames import Frame
from pipecat.services.kokoro.tts import KokoroTTSService, KokoroTTSSettings
from pipecat.transcriptions.language import Language
from pipecat.utils.tracing.service_decorators import traced_tts

from voicebot import model_files
from voicebot.audio.pcm import trim_leading_silence
from voicebot.pipecat_compat import init_tts_base_only
from voicebot.providers.llm.local import cpu_threads
from voicebot.providers.spec import ProviderSpec
from voicebot.providers.tts.sentence import REPLY_PAUSE_LIMIT_S, SentenceTTSService
from voicebot.threads import sleeping_onnx_options

if TYPE_CHECKING:
    from kokoro_onnx import Kokoro

    from voicebot.config import Settings

KOKORO_SAMPLE_RATE = 24000
# Kokoro-82M on the GPU, MiB (weights and ONNX Runtime's arena).
KOKORO_VRAM_MIB = 600

# espeak-ng (Kokoro's phonemizer) keeps global state: one phonemization at a time.
_PHONEMIZE_LOCK = threading.Lock()


class SharedKokoroTTSService(SentenceTTSService, KokoroTTSService):
    """Kokoro through a `Kokoro` instance shared by every session.

    Pipecat's KokoroTTSService loads (or downloads) the model in `__init__`; this one
    borrows the one the server loaded, on the CUDA or CPU execution provider chosen at
    start-up. Text arrives a sentence (or first clause) at a time; phonemization is
    serialised, the ONNX inference runs concurrently across sessions off the event loop.
    A reply's audio context stays open across slow sentences (`SentenceTTSService`).
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
        kwargs.setdefault("stop_frame_timeout_s", REPLY_PAUSE_LIMIT_S)
        # KokoroTTSService.__init__ would load the model files; only TTSService's init is wanted.
        init_tts_base_only(
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

    @traced_tts
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


def _files(settings: Settings) -> tuple[Path, Path]:
    kokoro = settings.tts.kokoro
    return model_files.kokoro_files(kokoro.model_path, kokoro.voices_path)


def _load(settings: Settings) -> Kokoro:
    import onnxruntime
    from kokoro_onnx import Kokoro

    model, voices = _files(settings)
    providers = ["CPUExecutionProvider"]
    use_cuda = settings.tts.device == "cuda"
    if use_cuda and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    elif use_cuda:
        logger.warning(
            "tts.device=cuda but onnxruntime has no CUDA provider: Kokoro runs on the CPU"
        )
    options = sleeping_onnx_options(cpu_threads())
    session = onnxruntime.InferenceSession(str(model), sess_options=options, providers=providers)
    kokoro: Kokoro = Kokoro.from_session(session, str(voices))
    return kokoro


def _synthesize(settings: Settings, kokoro: Kokoro, text: str) -> tuple[bytes, int]:
    k = settings.tts.kokoro
    audio, rate = kokoro.create(text, voice=k.voice, lang=k.language, speed=k.speed)
    pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16).tobytes()
    return trim_leading_silence(pcm, rate), rate


def _build(settings: Settings, kokoro: Kokoro) -> SharedKokoroTTSService:
    k = settings.tts.kokoro
    return SharedKokoroTTSService(
        kokoro=kokoro,
        voice=k.voice,
        language=k.language,
        speed=k.speed,
    )


def _check(settings: Settings) -> None:
    _files(settings)


def _warm(kokoro: Kokoro) -> None:
    kokoro.create("Hello.", voice=next(iter(kokoro.voices)), lang="en-us")


SPEC = ProviderSpec(
    id="kokoro",
    stage="tts",
    extra="kokoro",
    requires=("kokoro_onnx",),
    check=_check,
    load=_load,
    warm=_warm,
    build=_build,
    describe=lambda settings: settings.tts.kokoro.voice,
    sample_rate=lambda _settings, _kokoro: KOKORO_SAMPLE_RATE,
    synthesize=_synthesize,
    vram_mib=lambda _settings: KOKORO_VRAM_MIB,
)
