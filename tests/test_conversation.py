"""A spoken question over /ws gets a transcript and a spoken answer, from real models."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import faster_whisper
import llama_cpp
import numpy as np
import onnxruntime
import piper
import pytest
import soxr
import websockets

from voicebot.client import run_turn
from voicebot.local_server import LocalServer
from voicebot.models import SharedModels


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z']+", text.lower()))


def transcribe(models: SharedModels, pcm16: bytes, sample_rate: int) -> str:
    audio = np.frombuffer(pcm16, dtype=np.int16).astype(np.float32) / 32768
    audio = soxr.resample(audio, sample_rate, 16000)
    segments, _ = models.stt.model.transcribe(audio, language="en", beam_size=1)
    return " ".join(s.text for s in segments)


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
    assert result.turn_latency_ms is not None and 0 < result.turn_latency_ms < 10_000
    # The audio says what bot_text says: round-trip it through Whisper.
    heard = words(transcribe(models, result.reply_audio, result.sample_rate))
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
