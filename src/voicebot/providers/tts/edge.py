"""Microsoft Edge's read-aloud TTS (no API key) via the `edge-tts` client, decoded as it streams."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
import av
import edge_tts
from edge_tts.data_classes import TTSConfig
from edge_tts.exceptions import EdgeTTSException
from pipecat.frames.frames import Frame
from pipecat.services.settings import TTSSettings
from pipecat.services.tts_service import TTSService
from pipecat.utils.tracing.service_decorators import traced_tts

from voicebot.audio.pcm import trim_leading_silence
from voicebot.errors import ConfigError, ProviderError
from voicebot.providers.spec import ProviderSpec

if TYPE_CHECKING:
    from voicebot.config import Settings

# Edge always answers in audio-24khz-48kbitrate-mono-mp3.
EDGE_SAMPLE_RATE = 24000


class Mp3Decoder:
    """Incremental MP3 -> PCM16 mono with PyAV: feed bytes as they arrive, get audio back."""

    def __init__(self, sample_rate: int = EDGE_SAMPLE_RATE) -> None:
        self._codec = av.CodecContext.create("mp3", "r")
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate)

    def feed(self, data: bytes) -> Iterator[bytes]:
        for packet in self._codec.parse(data):
            yield from self._decode(packet)

    def flush(self) -> Iterator[bytes]:
        for packet in self._codec.parse(None):
            yield from self._decode(packet)
        yield from self._decode(None)

    def _decode(self, packet: Any) -> Iterator[bytes]:
        for frame in self._codec.decode(packet):
            for pcm in self._resampler.resample(frame):
                yield bytes(pcm.planes[0])[: pcm.samples * 2]


@dataclass
class EdgeTTSSettings(TTSSettings):
    """Runtime settings for `EdgeTTSService` (voice; rate/pitch/volume are init-only)."""


def edge_error(error: Exception) -> ProviderError:
    """Edge's failures as ProviderError: a refused handshake (4xx) will not pass by itself."""
    if isinstance(error, aiohttp.ClientResponseError) and 400 <= error.status < 500:
        return ProviderError(f"Edge refused the request: HTTP {error.status}", retryable=False)
    return ProviderError(f"{type(error).__name__}: {error}", retryable=True)


class EdgeTTSService(TTSService):
    """Edge TTS on Pipecat's TTS base: streamed MP3 decoded to PCM chunk by chunk.

    Each sentence opens one Edge WebSocket; audio is decoded and pushed as soon as the
    first MP3 frames arrive, with Edge's lead-in silence trimmed. A connection or
    protocol failure is reported as an error (and, with `tts.fallback`, spoken by the
    fallback voice instead).
    """

    Settings = EdgeTTSSettings
    _settings: EdgeTTSSettings

    def __init__(
        self,
        *,
        voice: str,
        rate: str = "+0%",
        pitch: str = "+0Hz",
        volume: str = "+0%",
        proxy: str | None = None,
        connect_timeout_s: int = 5,
        receive_timeout_s: int = 10,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            push_start_frame=True,
            push_stop_frames=True,
            settings=self.Settings(model=None, voice=voice, language=None),
            **kwargs,
        )
        try:  # edge-tts validates voice and prosody strings; fail at start-up, not mid-turn
            TTSConfig(voice, rate, volume, pitch, "SentenceBoundary")
        except ValueError as e:
            raise ConfigError(f"tts.edge: {e}") from e
        self._prosody = {"rate": rate, "pitch": pitch, "volume": volume}
        self._proxy = proxy
        self._timeouts = (connect_timeout_s, receive_timeout_s)

    def can_generate_metrics(self) -> bool:
        return True

    async def _pcm(self, text: str) -> AsyncIterator[bytes]:
        communicate = edge_tts.Communicate(
            text,
            str(self._settings.voice),
            rate=self._prosody["rate"],
            pitch=self._prosody["pitch"],
            volume=self._prosody["volume"],
            proxy=self._proxy,
            connect_timeout=self._timeouts[0],
            receive_timeout=self._timeouts[1],
        )
        decoder = Mp3Decoder()
        leading = True
        async for chunk in communicate.stream():
            if chunk["type"] != "audio":
                continue
            for pcm in decoder.feed(chunk["data"]):
                if leading:
                    pcm = trim_leading_silence(pcm, EDGE_SAMPLE_RATE)
                    leading = not pcm
                if pcm:
                    yield pcm
        for pcm in decoder.flush():
            yield pcm

    @traced_tts
    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame, None]:
        """Synthesise `text` with Edge, yielding audio as the MP3 stream decodes."""
        await self.start_tts_usage_metrics(text)
        try:
            async for frame in self._stream_audio_frames_from_iterator(
                self._pcm(text), in_sample_rate=EDGE_SAMPLE_RATE, context_id=context_id
            ):
                await self.stop_ttfb_metrics()
                yield frame
        except (EdgeTTSException, aiohttp.ClientError, TimeoutError, av.FFmpegError) as e:
            await self.push_error(
                error_msg=f"Edge TTS failed: {type(e).__name__}: {e}", exception=edge_error(e)
            )
        finally:
            await self.stop_ttfb_metrics()


def _build(settings: Settings, _model: None) -> EdgeTTSService:
    e = settings.tts.edge
    return EdgeTTSService(voice=e.voice, rate=e.rate, pitch=e.pitch, volume=e.volume, proxy=e.proxy)


SPEC = ProviderSpec(
    id="edge",
    stage="tts",
    extra="edge",
    requires=("edge_tts",),
    build=_build,
    describe=lambda settings: settings.tts.edge.voice,
    sample_rate=lambda _settings, _model: EDGE_SAMPLE_RATE,
    endpoint=lambda _settings: str(getattr(edge_tts.communicate, "WSS_URL", "edge")),
)
