"""A spoken question over /ws gets a transcript and a spoken answer, from real models."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from concurrent.futures import Future
from typing import Any

import edge_tts
import faster_whisper
import llama_cpp
import numpy as np
import onnxruntime
import piper
import pytest
import websockets

from tests.helpers import free_port, hear, tweak, words
from voicebot.config import FillerSettings, Settings
from voicebot.models import SharedModels
from voicebot.providers.tts.stage import filler_audio
from voicebot.tools.client import run_turn
from voicebot.tools.local_server import LocalServer


async def test_first_message_is_ready_with_output_rate(server: LocalServer) -> None:
    async with websockets.connect(server.ws_url) as ws:
        ready = json.loads(await ws.recv())
    assert ready["type"] == "ready"
    assert ready["sample_rate"] == 22050  # the Piper joe voice's own rate: no resampling
    assert ready["input_sample_rate"] == 16000
    assert ready["encoding"] == "pcm_s16le"


async def test_spoken_question_gets_transcript_and_spoken_reply(
    server: LocalServer,
    models: SharedModels,
    question_pcm: dict[str, np.ndarray],
    keywords: dict[str, Any],
) -> None:
    result = await run_turn(server.ws_url, question_pcm["capital"])

    assert set(keywords["capital"]) <= words(result.transcript), result.transcript
    assert result.reply, "the bot sent no bot_text"
    assert result.reply_audio_s > 0.5
    kinds = [e["type"] for e in result.events]
    assert (
        kinds.index("transcript")
        < kinds.index("bot_started_speaking")
        < kinds.index("bot_stopped_speaking")
    )
    assert result.turn_latency_ms is not None and result.turn_latency_ms > 0
    # The audio says what bot_text says: round-trip it through Whisper.
    heard = words(hear(models, result.reply_audio, result.sample_rate))
    said = words(result.reply)
    assert len(heard & said) >= len(said) // 2, (result.reply, heard)


async def test_two_concurrent_sessions_share_one_set_of_models(
    server: LocalServer,
    question_pcm: dict[str, np.ndarray],
    keywords: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loads: list[str] = []

    def spy(owner: Any, name: str) -> None:
        original = getattr(owner, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            loads.append(f"{owner.__name__}.{name}")
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, name, wrapper)

    spy(faster_whisper.WhisperModel, "__init__")
    spy(llama_cpp.Llama, "__init__")
    spy(piper.PiperVoice, "load")
    spy(onnxruntime.InferenceSession, "__init__")

    first, second = await asyncio.gather(
        run_turn(server.ws_url, question_pcm["capital"]),
        run_turn(server.ws_url, question_pcm["week"]),
    )

    assert set(keywords["capital"]) <= words(first.transcript), first.transcript
    assert set(keywords["week"]) <= words(second.transcript), second.transcript
    assert first.reply_audio_s > 0.5 and second.reply_audio_s > 0.5
    assert loads == [], f"a session loaded a model: {loads}"


@pytest.mark.slow
async def test_conversation_with_the_kokoro_voice(
    settings: Settings, models: SharedModels, question_pcm: dict[str, np.ndarray]
) -> None:
    kokoro = tweak(settings, tts={"provider": "kokoro"})
    voices = SharedModels.load(kokoro, stages=("tts",))
    shared = dataclasses.replace(models, loaded={**models.loaded, **voices.loaded})
    async with LocalServer(kokoro, models=shared) as server:
        result = await run_turn(server.ws_url, question_pcm["capital"])
    assert result.sample_rate == 24000  # Kokoro's own rate: no resampling on the way out
    heard = words(hear(models, result.reply_audio, result.sample_rate))
    assert result.reply_audio_s > 0.5 and len(heard & words(result.reply)) >= 2, result.reply


@pytest.mark.slow
@pytest.mark.parametrize(("after_secs", "expect_filler"), [(0.0, True), (20.0, False)])
async def test_filler_phrase_only_when_the_llm_is_late(
    settings: Settings,
    models: SharedModels,
    question_pcm: dict[str, np.ndarray],
    after_secs: float,
    expect_filler: bool,
) -> None:
    # Without speculative turns: a reply held while the turn is confirmed comes out with
    # its text at once, never late, so it never needs the filler.
    late = tweak(
        settings,
        tts={"filler": FillerSettings(enabled=True, after_secs=after_secs)},
        turn={"speculative": False},
    )
    shared = dataclasses.replace(models, filler=filler_audio(late, models))
    async with LocalServer(late, models=shared) as server:
        result = await run_turn(server.ws_url, question_pcm["week"])
    heard = hear(models, result.reply_audio, result.sample_rate).lower()
    assert heard.strip().startswith("let me check") is expect_filler, heard
    assert "check" not in result.reply.lower()  # the filler is audio only, not part of the reply


@pytest.mark.slow
async def test_a_tts_fallback_is_reported_to_the_client(
    settings: Settings,
    models: SharedModels,
    question_pcm: dict[str, np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Edge "down": nothing listens where its client connects.
    monkeypatch.setattr(edge_tts.communicate, "WSS_URL", f"ws://127.0.0.1:{free_port()}/edge?x=1")
    edge_down = tweak(settings, tts={"provider": "edge", "fallback": "piper"})
    async with LocalServer(edge_down, models=models) as server:
        result = await run_turn(server.ws_url, question_pcm["week"])
    assert result.reply_audio_s > 0.5  # the user still hears the answer
    counts = [
        e["fallbacks"] for e in result.events if e.get("type") == "metrics" and "fallbacks" in e
    ]
    assert (
        counts
        and counts[0] == 1
        and all(e.get("stage") == "tts" for e in result.events if "fallbacks" in e)
    )


async def test_a_turn_without_a_transcript_never_reaches_the_llm(
    settings: Settings,
    models: SharedModels,
    question_pcm: dict[str, np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """When STT fails, the person gets an error event and the bot does not answer nothing."""
    from voicebot.providers.llm.llama_cpp import LlamaCppLLMService
    from voicebot.providers.stt.whisper_engine import WhisperEngine

    def broken(self: WhisperEngine, samples: np.ndarray) -> Future[Any]:
        failed: Future[Any] = Future()
        failed.set_exception(RuntimeError("decoder crashed"))
        return failed

    generations: list[object] = []
    original = LlamaCppLLMService._generate

    def counted(self: LlamaCppLLMService, *args: Any) -> None:
        generations.append(args)
        original(self, *args)

    monkeypatch.setattr(WhisperEngine, "submit", broken)
    monkeypatch.setattr(LlamaCppLLMService, "_generate", counted)
    async with LocalServer(settings, models=models) as server:
        with pytest.raises(TimeoutError):
            await run_turn(server.ws_url, question_pcm["week"], reply_timeout_s=8)
    assert generations == []
