"""A local stand-in for Microsoft Edge's read-aloud WebSocket, speaking the same protocol.

It answers `speech.config` + `ssml` text messages the way the service does: `turn.start`,
then binary `Path:audio` messages carrying MP3 (24 kHz mono, encoded with PyAV), then
`turn.end`. The speech itself comes from a Piper voice. Modes reproduce failures:
`drop` closes mid-stream, `stall` never answers, `refuse` closes before any audio.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from html import unescape

import av
import numpy as np
import websockets

SAMPLE_RATE = 24000
CHUNK_BYTES = 1440  # roughly what Edge sends per message


def mp3(pcm16: np.ndarray) -> bytes:
    """Encode 24 kHz mono PCM16 as 48 kbit/s MP3, like Edge's output format."""
    out = io.BytesIO()
    # Edge sends bare MP3 frames: no ID3 tag, no Xing header.
    options = {"id3v2_version": "0", "write_id3v1": "0", "write_xing": "0"}
    with av.open(out, "w", format="mp3", options=options) as container:
        stream = container.add_stream("libmp3lame", rate=SAMPLE_RATE, layout="mono")
        stream.bit_rate = 48000
        frame = av.AudioFrame.from_ndarray(pcm16.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()


def _text_message(path: str, body: str = "{}") -> str:
    return (
        f"X-RequestId:{uuid.uuid4().hex}\r\nContent-Type:application/json; charset=utf-8\r\n"
        f"Path:{path}\r\n\r\n{body}"
    )


def _audio_message(data: bytes, content_type: bool = True) -> bytes:
    header = f"X-RequestId:{uuid.uuid4().hex}\r\n"
    if content_type:
        header += "Content-Type:audio/mpeg\r\n"
    header += "Path:audio"
    encoded = header.encode()
    # The client reads the 2-byte length as covering itself and the header lines.
    return (len(encoded) + 2).to_bytes(2, "big") + encoded + b"\r\n" + data


class EdgeServer:
    def __init__(self, speak: Callable[[str], np.ndarray]) -> None:
        self._speak = speak
        self.mode = "normal"
        self.requests: list[str] = []
        self.port = 0
        # Set when the server shuts down, so a stalled handler ends with it (not 30 s later).
        self.closing = asyncio.Event()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/consumer/speech/synthesize/readaloud/edge/v1?TrustedClientToken=x"

    async def _handle(self, ws: websockets.ServerConnection) -> None:
        config = await ws.recv()
        assert isinstance(config, str) and "Path:speech.config" in config
        ssml = await ws.recv()
        assert isinstance(ssml, str) and "Path:ssml" in ssml
        match = re.search(r"<prosody[^>]*>(.*?)</prosody>", ssml, re.S)
        text = unescape(match.group(1)) if match else ""
        self.requests.append(text)
        if self.mode == "stall":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.closing.wait(), 30)
            return
        if self.mode == "refuse":
            await ws.close()
            return
        await ws.send(_text_message("turn.start"))
        audio = mp3(self._speak(text))
        chunks = [audio[i : i + CHUNK_BYTES] for i in range(0, len(audio), CHUNK_BYTES)]
        for n, chunk in enumerate(chunks):
            if self.mode == "drop" and n == len(chunks) // 2:
                await ws.close()  # the service hangs up mid-sentence
                return
            await ws.send(_audio_message(chunk))
            await asyncio.sleep(0.005)
        await ws.send(_audio_message(b"", content_type=False))
        await ws.send(_text_message("turn.end"))


@asynccontextmanager
async def edge_server(speak: Callable[[str], np.ndarray]) -> AsyncIterator[EdgeServer]:
    server = EdgeServer(speak)
    async with websockets.serve(server._handle, "127.0.0.1", 0, compression=None) as ws_server:
        server.port = next(iter(ws_server.sockets)).getsockname()[1]
        try:
            yield server
        finally:
            server.closing.set()
