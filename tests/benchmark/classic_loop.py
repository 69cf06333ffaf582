"""A hand-written sequential voice loop: the kind of server voicebot replaces, for comparison.

One FastAPI WebSocket handler configured by environment variables, as such loops are:
Silero VAD ends the utterance after VAD_STOP_SECS of silence, faster-whisper transcribes
it, llama.cpp streams the reply, and Piper speaks it piece by piece (the first clause as
soon as it has a few words, then whole sentences), paced out at real time. It speaks
voicebot's `/ws` protocol (ready, binary PCM both ways, transcript/bot_text/speaking/
metrics events) so `voicebot.tools.client.run_turn` measures it exactly as it measures
voicebot. It is meant to be a fair opponent: models are loaded and warmed once, with the
same files and thread counts; what it lacks is what voicebot adds (interruptions,
turn detection beyond silence, failover, metrics, several transports).

    WHISPER_MODEL=/path/to/ct2-folder LLM_MODEL_PATH=/path/model.gguf \
    PIPER_VOICE=/path/voice.onnx python -m tests.benchmark.classic_loop --port 8000

Unset model variables fall back to the bundled models (found with voicebot's path helpers).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import queue
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import uvicorn
from fastapi import FastAPI, WebSocket, WebSocketDisconnect

SAMPLE_RATE = 16000
VAD_WINDOW = 512  # samples: Silero's frame at 16 kHz (32 ms)
OUT_CHUNK_S = 0.02
CLAUSE_BREAKS = ",;:\u2014"
SENTENCE_END = re.compile(r"[.!?](?:\s|$)")
SYSTEM_PROMPT = (
    "You are a friendly voice assistant. Your reply is spoken aloud, so answer in one or "
    "two short sentences of plain text, with no lists, markdown, emojis or code."
)


@dataclass(frozen=True)
class Config:
    """Everything the loop reads from the environment."""

    whisper_model: str = os.environ.get("WHISPER_MODEL", "")
    whisper_compute_type: str = os.environ.get("WHISPER_COMPUTE_TYPE", "int8")
    llm_model_path: str = os.environ.get("LLM_MODEL_PATH", "")
    llm_max_tokens: int = int(os.environ.get("LLM_MAX_TOKENS", "80"))
    llm_temperature: float = float(os.environ.get("LLM_TEMPERATURE", "0.3"))
    llm_repeat_penalty: float = float(os.environ.get("LLM_REPEAT_PENALTY", "1.1"))
    llm_n_ctx: int = int(os.environ.get("LLM_N_CTX", "2048"))
    system_prompt: str = os.environ.get("SYSTEM_PROMPT", SYSTEM_PROMPT)
    piper_voice: str = os.environ.get("PIPER_VOICE", "")
    vad_confidence: float = float(os.environ.get("VAD_CONFIDENCE", "0.7"))
    vad_start_secs: float = float(os.environ.get("VAD_START_SECS", "0.2"))
    vad_stop_secs: float = float(os.environ.get("VAD_STOP_SECS", "0.2"))
    first_clause_words: int = int(os.environ.get("FIRST_CLAUSE_WORDS", "4"))
    cpu_threads: int = int(os.environ.get("CPU_THREADS", "0")) or (os.cpu_count() or 1)
    # Threads that write the LLM's reply (voicebot's resolved llm.llama_cpp.n_threads);
    # 0: as many as cpu_threads. Prompts are read with every core.
    llm_threads: int = int(os.environ.get("LLM_THREADS", "0"))

    @property
    def llm_decode_threads(self) -> int:
        return self.llm_threads or self.cpu_threads


class Models:
    """Whisper, the LLM, the Piper voice and Silero's ONNX file, loaded once and warmed."""

    def __init__(self, config: Config) -> None:
        from faster_whisper import WhisperModel
        from piper import PiperVoice

        from voicebot import model_files
        from voicebot.providers.llm.llama_cpp import load_llama

        whisper = config.whisper_model or str(_bundled_whisper())
        self.whisper = WhisperModel(
            whisper,
            device="cpu",
            compute_type=config.whisper_compute_type,
            cpu_threads=config.cpu_threads,
            local_files_only=True,
        )
        gguf = Path(config.llm_model_path or model_files.bundled_smollm2("LLM_MODEL_PATH"))
        # voicebot's loader only for its portability guard (AMX builds); plain Llama() else.
        self.llm = load_llama(
            gguf,
            n_ctx=config.llm_n_ctx,
            n_threads=config.llm_decode_threads,
            gpu_layers=0,
        )
        voice = config.piper_voice or str(
            model_files.piper_voice_file(model_files.PIPER_JOE_VOICE, None)
        )
        self.voice = PiperVoice.load(voice)
        vad_data = model_files.package_dir("pipecat.audio.vad.data") or Path("/nonexistent")
        self.silero_path = vad_data / "silero_vad.onnx"
        self.llm_lock = threading.Lock()

    def warm(self) -> None:
        tone = 0.1 * np.sin(np.linspace(0, 2 * np.pi * 440, SAMPLE_RATE)).astype(np.float32)
        self.transcribe(tone)
        for _ in self.llm.create_chat_completion(
            messages=[{"role": "user", "content": "Hi"}], max_tokens=4, stream=True
        ):
            pass
        for _ in self.voice.synthesize("Hello."):
            pass

    def transcribe(self, samples: np.ndarray) -> str:
        segments, _ = self.whisper.transcribe(
            samples,
            language="en",
            beam_size=1,
            temperature=0.0,
            condition_on_previous_text=False,
            without_timestamps=True,
            vad_filter=False,
        )
        return " ".join(s.text.strip() for s in segments if s.no_speech_prob < 0.4).strip()


def _bundled_whisper() -> Path:
    from voicebot import model_files
    from voicebot.config import Settings

    folder = model_files.find_whisper("tiny.en", Settings())
    if folder is None:
        raise SystemExit("WHISPER_MODEL is unset and the bundled tiny.en is not installed")
    return folder


class Vad:
    """Silero speech probability per 32 ms window, with start and stop windows in seconds."""

    def __init__(self, path: Path, config: Config) -> None:
        from pipecat.audio.vad.silero import SileroOnnxModel

        self._model = SileroOnnxModel(str(path), force_onnx_cpu=True)
        self._confidence = config.vad_confidence
        self._start = max(1, round(config.vad_start_secs * SAMPLE_RATE / VAD_WINDOW))
        self._stop = max(1, round(config.vad_stop_secs * SAMPLE_RATE / VAD_WINDOW))
        self._pending = np.zeros(0, np.float32)
        self._voiced = self._silent = 0
        self.speaking = False
        self.utterance: list[np.ndarray] = []

    def feed(self, pcm: bytes) -> tuple[bool, np.ndarray | None]:
        """Add audio; returns (speech started now, the finished utterance if it just ended)."""
        samples = np.frombuffer(pcm, np.int16).astype(np.float32) / 32768.0
        self._pending = np.concatenate([self._pending, samples])
        started, finished = False, None
        while len(self._pending) >= VAD_WINDOW:
            window, self._pending = self._pending[:VAD_WINDOW], self._pending[VAD_WINDOW:]
            voiced = float(self._model(window[None, :], SAMPLE_RATE)[0][0]) >= self._confidence
            self.utterance.append(window)
            if not self.speaking:
                self._voiced = self._voiced + 1 if voiced else 0
                # Keep a little audio before the start was confirmed.
                self.utterance = self.utterance[-(self._start + 8) :]
                if self._voiced >= self._start:
                    self.speaking, self._silent, started = True, 0, True
            else:
                self._silent = 0 if voiced else self._silent + 1
                if self._silent >= self._stop:
                    finished = np.concatenate(self.utterance)
                    self.speaking, self._voiced, self.utterance = False, 0, []
        return started, finished


def split_reply(tokens: Iterator[str], first_clause_words: int) -> Iterator[str]:
    """Group streamed tokens into pieces to speak: the first clause early, then sentences."""
    text, first = "", True
    for token in tokens:
        text += token
        while True:
            end = SENTENCE_END.search(text)
            cut = end.end() if end else None
            if cut is None and first and first_clause_words:
                for i, char in enumerate(text):
                    if char in CLAUSE_BREAKS and len(text[:i].split()) >= first_clause_words:
                        if not (char == "," and text[i - 1 : i].isdigit()):
                            cut = i + 1
                            break
            if cut is None:
                break
            piece, text, first = text[:cut].strip(), text[cut:], False
            if piece:
                yield piece
    if text.strip():
        yield text.strip()


@dataclass
class Conversation:
    """One client's history and the send lock that keeps events and audio in order."""

    websocket: WebSocket
    config: Config
    messages: list[dict[str, str]] = field(default_factory=list)
    send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def event(self, kind: str, **fields: Any) -> None:
        async with self.send_lock:
            await self.websocket.send_json({"type": kind, **fields})

    async def audio(self, pcm: bytes) -> None:
        async with self.send_lock:
            await self.websocket.send_bytes(pcm)


def _produce_reply(models: Models, conv: Conversation, out: queue.Queue[Any]) -> None:
    """Worker thread: stream the LLM, cut pieces, synthesise each; puts (kind, value) items."""
    started = time.perf_counter()
    try:
        with models.llm_lock:
            stream: Any = models.llm.create_chat_completion(
                messages=conv.messages,  # type: ignore[arg-type]
                max_tokens=conv.config.llm_max_tokens,
                temperature=conv.config.llm_temperature,
                repeat_penalty=conv.config.llm_repeat_penalty,
                stream=True,
            )
            first_token: list[float] = []

            def tokens() -> Iterator[str]:
                for chunk in stream:
                    text = chunk["choices"][0]["delta"].get("content")
                    if text:
                        if not first_token:
                            first_token.append(time.perf_counter())
                            out.put(("llm_ttfb_ms", (first_token[0] - started) * 1000))
                        yield text

            for piece in split_reply(tokens(), conv.config.first_clause_words):
                asked = time.perf_counter()
                out.put(("text", piece))
                for i, chunk in enumerate(models.voice.synthesize(piece)):
                    if i == 0:
                        out.put(("tts_ttfb_ms", (time.perf_counter() - asked) * 1000))
                    out.put(("audio", chunk.audio_int16_bytes))
    finally:
        out.put(("end", None))


async def answer(models: Models, conv: Conversation, utterance: np.ndarray) -> None:
    """One turn: transcribe, then stream the reply's audio out at real-time pace."""
    started = time.perf_counter()
    text = await asyncio.to_thread(models.transcribe, utterance)
    await conv.event(
        "metrics", stage="stt", processing_ms=round((time.perf_counter() - started) * 1000, 1)
    )
    if not text:
        return
    await conv.event("transcript", text=text, final=True)
    conv.messages.append({"role": "user", "content": text})
    items: queue.Queue[Any] = queue.Queue()
    worker = threading.Thread(target=_produce_reply, args=(models, conv, items), daemon=True)
    worker.start()
    rate = models.voice.config.sample_rate
    chunk_bytes = int(rate * OUT_CHUNK_S) * 2
    reply, clock, speaking = [], 0.0, False
    while (item := await asyncio.to_thread(items.get))[0] != "end":
        kind, value = item
        if kind == "text":
            reply.append(value)
            await conv.event("bot_text", text=value)
        elif kind in ("llm_ttfb_ms", "tts_ttfb_ms"):
            await conv.event("metrics", stage=kind[:3], ttfb_ms=round(value, 1))
        elif kind == "audio":
            if not speaking:
                speaking, clock = True, time.perf_counter()
                await conv.event("bot_started_speaking")
            for offset in range(0, len(value), chunk_bytes):
                piece = value[offset : offset + chunk_bytes]
                await conv.audio(piece)
                # No faster than real time, as a loudspeaker plays it: one chunk ahead at most.
                clock = max(clock, time.perf_counter()) + len(piece) / 2 / rate
                await asyncio.sleep(max(0.0, clock - time.perf_counter() - OUT_CHUNK_S))
    await asyncio.sleep(max(0.0, clock - time.perf_counter()))
    if speaking:
        await conv.event("bot_stopped_speaking")
    conv.messages.append({"role": "assistant", "content": " ".join(reply)})


def create_app(config: Config | None = None) -> FastAPI:
    config = config or Config()
    loaded: dict[str, Models] = {}

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        models = await asyncio.to_thread(Models, config)
        await asyncio.to_thread(models.warm)
        loaded["models"] = models
        yield

    app = FastAPI(lifespan=lifespan)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        models = loaded["models"]
        conv = Conversation(
            websocket, config, [{"role": "system", "content": config.system_prompt}]
        )
        rate = models.voice.config.sample_rate
        await conv.event("ready", protocol=1, session_id=uuid.uuid4().hex[:12], sample_rate=rate)
        vad = Vad(models.silero_path, config)
        turns: asyncio.Queue[np.ndarray] = asyncio.Queue()

        async def run_turns() -> None:
            while True:
                await answer(models, conv, await turns.get())

        worker = asyncio.create_task(run_turns())
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                if message.get("bytes"):
                    started, finished = vad.feed(message["bytes"])
                    if started:
                        await conv.event("user_started_speaking")
                    if finished is not None:
                        await conv.event("user_stopped_speaking")
                        turns.put_nowait(finished)
                elif message.get("text") and '"ping"' in message["text"]:
                    await conv.event("pong")
        except WebSocketDisconnect:
            pass
        finally:
            worker.cancel()

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    args = parser.parse_args()
    serve(create_app(), args.host, args.port)


def serve(app: FastAPI, host: str, port: int) -> None:
    """Run a comparison bot's app as voicebot's server runs: no permessage-deflate on PCM,
    so CPU per turn compares pipelines, not WebSocket settings."""
    uvicorn.run(app, host=host, port=port, log_level="warning", ws_per_message_deflate=False)


if __name__ == "__main__":
    main()
