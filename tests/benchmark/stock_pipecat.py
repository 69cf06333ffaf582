"""A stock Pipecat voice bot with voicebot's models, written as Pipecat's examples write one.

Per connection (as in Pipecat's `run_bot(websocket)` examples): Pipecat's
FastAPIWebsocketTransport, its SileroVADAnalyzer (stop_secs 0.2, as Pipecat recommends
with smart-turn), its default user turn strategies (smart-turn v3), its WhisperSTTService
and PiperTTSService, an LLMContext with the aggregator pair, and Pipecat's default
sentence aggregation for TTS. The models are the same files voicebot uses.

Two pieces are not stock, because Pipecat has no equivalent:
- the LLM: Pipecat has no llama.cpp service, so voicebot's `LlamaCppLLMService` (a plain
  Pipecat `LLMService` subclass) runs the same GGUF, loaded once at start-up;
- the wire format: voicebot's `ProtocolSerializer` and `ProtocolEventObserver` turn
  frames into voicebot's `/ws` protocol so the same client measures every system. They
  only translate frames to messages; they do not change what the pipeline does.

Configured by the same environment variables as `classic_loop`:

    python -m tests.benchmark.stock_pipecat --port 8001
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, WebSocket
from loguru import logger
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADParams
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import (
    LLMContextAggregatorPair,
    LLMUserAggregatorParams,
)
from pipecat.services.piper.tts import PiperTTSService
from pipecat.services.whisper.stt import WhisperSTTService
from pipecat.transports.websocket.fastapi import (
    FastAPIWebsocketParams,
    FastAPIWebsocketTransport,
)
from pipecat.workers.runner import WorkerRunner

from tests.benchmark.classic_loop import Config, _bundled_whisper, serve
from voicebot import model_files
from voicebot.observability.events import ProtocolEventObserver
from voicebot.protocol import ProtocolSerializer, ReadyEvent, ServerEvent, encode_event
from voicebot.providers.llm.llama_cpp import LlamaCppLLMService, LlamaCppModel, load_llama


def _voice_file(config: Config) -> Path:
    if config.piper_voice:
        return Path(config.piper_voice)
    return model_files.piper_voice_file(model_files.PIPER_JOE_VOICE, None)


def load_llm(config: Config) -> LlamaCppModel:
    """The one shared model: the non-stock LLM service borrows it in every session."""
    gguf = Path(config.llm_model_path or model_files.bundled_smollm2("LLM_MODEL_PATH"))
    llama = load_llama(
        gguf,
        n_ctx=config.llm_n_ctx,
        n_threads=config.llm_decode_threads,
        gpu_layers=0,
    )
    model = LlamaCppModel(llama, gguf.stem)
    for _ in llama.create_chat_completion(
        messages=[{"role": "user", "content": "Hi"}], max_tokens=4, stream=True
    ):
        pass
    return model


def build_worker(
    websocket: WebSocket, config: Config, llm_model: LlamaCppModel, observer: Any
) -> tuple[PipelineWorker, FastAPIWebsocketTransport, int]:
    """One session's pipeline, as Pipecat's examples build it (models load here)."""
    voice = _voice_file(config)
    out_rate = int(json.loads(voice.with_suffix(".onnx.json").read_text())["audio"]["sample_rate"])
    transport = FastAPIWebsocketTransport(
        websocket,
        FastAPIWebsocketParams(
            audio_in_enabled=True,
            audio_out_enabled=True,
            add_wav_header=False,
            serializer=ProtocolSerializer(),
        ),
    )
    stt = WhisperSTTService(
        settings=WhisperSTTService.Settings(model=config.whisper_model or str(_bundled_whisper())),
        device="cpu",
        compute_type=config.whisper_compute_type,
    )
    llm = LlamaCppLLMService(
        model=llm_model,
        max_tokens=config.llm_max_tokens,
        temperature=config.llm_temperature,
        repeat_penalty=config.llm_repeat_penalty,
        system_instruction=config.system_prompt,
    )
    tts = PiperTTSService(
        settings=PiperTTSService.Settings(voice=voice.stem), download_dir=voice.parent
    )
    context = LLMContext()
    aggregators = LLMContextAggregatorPair(
        context,
        user_params=LLMUserAggregatorParams(
            vad_analyzer=SileroVADAnalyzer(params=VADParams(stop_secs=config.vad_stop_secs))
        ),
    )
    pipeline = Pipeline(
        [
            transport.input(),
            stt,
            aggregators.user(),
            llm,
            tts,
            transport.output(),
            aggregators.assistant(),
        ]
    )
    worker = PipelineWorker(
        pipeline,
        params=PipelineParams(
            audio_in_sample_rate=16000, audio_out_sample_rate=out_rate, enable_metrics=True
        ),
        observers=[observer],
    )
    return worker, transport, out_rate


def create_app(config: Config | None = None) -> FastAPI:
    config = config or Config()
    loaded: dict[str, LlamaCppModel] = {}

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        loaded["llm"] = await asyncio.to_thread(load_llm, config)
        yield

    app = FastAPI(lifespan=lifespan)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()

        async def send(event: ServerEvent) -> None:
            await websocket.send_text(encode_event(event))

        observer = ProtocolEventObserver(sink=send)
        # Blocks the event loop while Whisper and Piper load, as in Pipecat's examples.
        worker, transport, out_rate = build_worker(websocket, config, loaded["llm"], observer)

        @transport.event_handler("on_client_disconnected")
        async def on_client_disconnected(_transport: Any, _client: Any) -> None:
            await worker.cancel()

        await send(ReadyEvent(sample_rate=out_rate, session_id=uuid.uuid4().hex[:12]))
        await WorkerRunner(handle_sigint=False).run(worker)

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8001")))
    args = parser.parse_args()
    # Pipecat logs every frame event at DEBUG by default; voicebot serves at INFO.
    logger.remove()
    logger.add(sys.stderr, level=os.environ.get("LOG_LEVEL", "INFO"))
    serve(create_app(), args.host, args.port)


if __name__ == "__main__":
    main()
