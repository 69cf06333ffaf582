"""Piper TTS over the process-wide voice: sentence-by-sentence synthesis, no per-session load."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loguru import logger
from pipecat.frames.frames import EagerEndOfTurnCancelFrame, Frame, InterruptionFrame
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.settings import TTSSettings
from pipecat.utils.tracing.service_decorators import traced_tts

from voicebot import model_files
from voicebot.audio.pcm import trim_leading_silence
from voicebot.providers.spec import ProviderSpec
from voicebot.providers.tts.ahead import AheadAudio, AheadCounts
from voicebot.providers.tts.sentence import REPLY_PAUSE_LIMIT_S, SentenceTTSService
from voicebot.threads import FIRST_AUDIO, FirstAudioPriority, sleeping_onnx_options

if TYPE_CHECKING:
    from piper import PiperVoice

    from voicebot.config import Settings


@dataclass
class PiperTTSSettings(TTSSettings):
    """Runtime settings for `PiperTTSService` (voice changes need a restart)."""


class PiperTTSService(SentenceTTSService):
    """Local Piper synthesis with a `PiperVoice` loaded once per process.

    Pipecat's own `PiperTTSService` loads (and may download) the voice in `__init__`,
    which would put a model load on every session; this one borrows the shared voice.
    Piper runs on ONNX Runtime, whose sessions are thread-safe, so sessions synthesise
    concurrently. Each text Pipecat hands over (one sentence) is synthesised off the
    event loop and streamed out chunk by chunk, resampled to the pipeline's rate. A reply's
    audio context stays open across slow sentences (`SentenceTTSService`). A held reply's
    first piece can be synthesised before the reply arrives (`synthesise_ahead`,
    providers/tts/ahead.py).
    """

    Settings = PiperTTSSettings
    _settings: PiperTTSSettings

    def __init__(
        self,
        *,
        voice: PiperVoice,
        voice_name: str,
        first_audio: FirstAudioPriority | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("stop_frame_timeout_s", REPLY_PAUSE_LIMIT_S)
        super().__init__(
            push_start_frame=True,
            push_stop_frames=True,
            settings=self.Settings(model=None, voice=voice_name, language=None),
            **kwargs,
        )
        self._voice = voice
        # Local LLMs hold still while a reply's first chunk is synthesised (CPU only).
        self._first_audio = first_audio
        self._last_context: str | None = None
        self._ahead: AheadAudio | None = None
        self.ahead = AheadCounts()

    def can_generate_metrics(self) -> bool:
        return True

    def _next_chunk(self, chunks: Iterator[Any], first: bool) -> Any:
        """The next chunk (on a worker thread); a reply's first is made with LLMs held."""
        if first and self._first_audio is not None:
            with self._first_audio.synthesising():
                return next(chunks, None)
        return next(chunks, None)

    async def _chunks(self, text: str, *, reply_start: bool = False) -> AsyncIterator[bytes]:
        chunks: Iterator[Any] = iter(self._voice.synthesize(text))
        rate = self._voice.config.sample_rate
        leading = True
        while (
            chunk := await asyncio.to_thread(self._next_chunk, chunks, leading and reply_start)
        ) is not None:
            audio = chunk.audio_int16_bytes
            if leading:
                # Piper starts every utterance with ~40-50 ms of silence.
                audio = trim_leading_silence(audio, rate)
                leading = not audio
            if audio:
                yield audio

    async def synthesise_ahead(self, text: str) -> None:
        """Start on a held reply's first piece; `run_tts` takes it if the reply brings it."""
        await self._drop_ahead()
        chunks: asyncio.Queue[object] = asyncio.Queue()
        fill = AheadAudio.fill(self._chunks(text, reply_start=True), chunks)
        task = self.create_task(fill, f"{self}::synthesise_ahead")
        self._ahead = AheadAudio(text.strip(), task, chunks)
        self.ahead.started += 1

    async def _drop_ahead(self) -> None:
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            self.ahead.dropped += 1
            await self.cancel_task(ahead.task)

    async def _take_ahead(self, text: str) -> AheadAudio | None:
        if self._ahead is not None and self._ahead.matches(text):
            ahead, self._ahead = self._ahead, None
            self.ahead.used += 1
            return ahead
        await self._drop_ahead()
        return None

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        if isinstance(frame, EagerEndOfTurnCancelFrame | InterruptionFrame):
            await self._drop_ahead()  # the reply it belonged to was withdrawn or cut off
        await super().process_frame(frame, direction)

    async def cleanup(self) -> None:
        await self._drop_ahead()
        await super().cleanup()

    @traced_tts
    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame, None]:
        """Synthesise `text`, yielding audio frames as each Piper chunk is ready."""
        await self.start_tts_usage_metrics(text)
        # The first text of a reply (a new context) is what the person is waiting for.
        reply_start, self._last_context = context_id != self._last_context, context_id
        ahead = await self._take_ahead(text)
        if ahead is not None:
            logger.debug("first piece synthesised ahead")
        chunks = ahead.stream() if ahead else self._chunks(text, reply_start=reply_start)
        try:
            async for frame in self._stream_audio_frames_from_iterator(
                chunks,
                in_sample_rate=self._voice.config.sample_rate,
                context_id=context_id,
            ):
                await self.stop_ttfb_metrics()
                yield frame
        except Exception as e:  # onnxruntime / espeak failures surface as plain exceptions
            await self.push_error(error_msg=f"Piper synthesis failed: {e}", exception=e)
        finally:
            if ahead is not None:
                ahead.task.cancel()  # an interrupted reply stops the piece's synthesis too
            await self.stop_ttfb_metrics()


def _voice_file(settings: Settings) -> Path:
    piper = settings.tts.piper
    return model_files.piper_voice_file(piper.voice, piper.voice_dir)


def _load(settings: Settings) -> PiperVoice:
    import onnxruntime
    from piper import PiperVoice
    from piper.config import PiperConfig

    # `PiperVoice.load` builds the session with default options; ours sleep between
    # operators instead of spinning (threads.sleeping_onnx_options).
    model = _voice_file(settings)
    config = json.loads(Path(f"{model}.json").read_text(encoding="utf-8"))
    providers: list[Any] = ["CPUExecutionProvider"]
    if settings.tts.device == "cuda":
        providers = [("CUDAExecutionProvider", {"cudnn_conv_algo_search": "HEURISTIC"})]
    session = onnxruntime.InferenceSession(
        str(model), sess_options=sleeping_onnx_options(), providers=providers
    )
    return PiperVoice(config=PiperConfig.from_dict(config), session=session)


def _synthesize(_settings: Settings, voice: PiperVoice, text: str) -> tuple[bytes, int]:
    pcm = b"".join(chunk.audio_int16_bytes for chunk in voice.synthesize(text))
    rate = int(voice.config.sample_rate)
    return trim_leading_silence(pcm, rate), rate


def _check(settings: Settings) -> None:
    _voice_file(settings)


def _warm(voice: PiperVoice) -> None:
    for _ in voice.synthesize("Hello."):
        pass


SPEC = ProviderSpec(
    id="piper",
    stage="tts",
    extra="piper",
    requires=("piper",),
    check=_check,
    load=_load,
    warm=_warm,
    build=lambda settings, voice: PiperTTSService(
        voice=voice,
        voice_name=settings.tts.piper.voice,
        first_audio=FIRST_AUDIO
        if settings.tts.first_audio_priority and settings.tts.device != "cuda"
        else None,
    ),
    describe=lambda settings: settings.tts.piper.voice,
    sample_rate=lambda _settings, voice: int(voice.config.sample_rate),
    synthesize=_synthesize,
)
