"""GET /metrics: Prometheus text a scraper can parse, moved by a real /ws conversation."""

from __future__ import annotations

import asyncio
import itertools
from types import SimpleNamespace
from typing import Any

import httpx
import numpy as np
import pynvml
import pytest
import websockets
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    ErrorFrame,
    Frame,
    InterruptionFrame,
    LLMContextFrame,
    UserStoppedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.observers.base_observer import FramePushed
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.frame_processor import FrameDirection
from pipecat.tests.utils import run_test
from prometheus_client.parser import text_string_to_metric_families

from tests import nvml_readings as cards
from tests.fakes import FakeLLMService
from voicebot.observability.metrics_observer import MetricsObserver
from voicebot.observability.prometheus import VoicebotMetrics
from voicebot.observability.turn_timeline import MOMENTS
from voicebot.providers.llm.failover import FailoverLLMService
from voicebot.tools.client import run_turn
from voicebot.tools.local_server import LocalServer

Scrape = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Scrape:
    """Every sample of a scrape, keyed by its name and sorted labels."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(scrape: Scrape, metric: str, /, **labels: str) -> float:
    return scrape.get((metric, tuple(sorted(labels.items()))), 0.0)


async def scrape(server: LocalServer) -> Scrape:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{server.http_url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return samples(response.text)


async def test_a_ws_conversation_shows_in_metrics(
    server: LocalServer, question_pcm: dict[str, np.ndarray]
) -> None:
    before = await scrape(server)
    result = await run_turn(server.ws_url, question_pcm["capital"])
    assert result.reply_audio_s > 0
    # The `turn` metrics event names every step of the served turn, in order (1 ms slack:
    # some moments are worked back from a stage's own metric).
    steps = result.server_timeline_ms
    assert list(steps)[: len(MOMENTS)] == list(MOMENTS)
    assert all(steps[a] <= steps[b] + 1 for a, b in itertools.pairwise(MOMENTS))
    assert steps["vad_stop"] > 0

    after = await scrape(server)
    turn_count = "voicebot_turn_latency_seconds_count"
    assert value(after, turn_count, transport="ws") >= value(before, turn_count, transport="ws") + 1
    latency = value(after, "voicebot_turn_latency_seconds_sum", transport="ws") - value(
        before, "voicebot_turn_latency_seconds_sum", transport="ws"
    )
    # Server-side latency of a real turn on CPU: positive and well under the client's wait.
    assert 0 < latency < 60
    for name in (
        "voicebot_stt_seconds_count",
        "voicebot_stt_rtf_count",
        "voicebot_llm_ttft_seconds_count",
        "voicebot_tts_first_audio_seconds_count",
    ):
        assert value(after, name) > value(before, name), name
    for name in ("voicebot_sessions_total", "voicebot_turns_total"):
        assert value(after, name, transport="ws") > value(before, name, transport="ws"), name
    # The session ends once the server notices the client has gone.
    for _ in range(100):
        if value(await scrape(server), "voicebot_active_sessions", transport="ws") == 0:
            break
        await asyncio.sleep(0.1)
    else:
        pytest.fail("voicebot_active_sessions stayed above 0 after the client left")
    loaded = [key for key in after if key[0] == "voicebot_models_loaded"]
    assert loaded, "the shared models are listed"
    # Bounded labels: no session id ever becomes a label value.
    assert all(len(dict(labels)) <= 4 for _, labels in after)


async def test_refused_client_messages_are_counted_by_code(server: LocalServer) -> None:
    before = await scrape(server)
    async with websockets.connect(server.ws_url) as ws:
        await ws.recv()  # ready
        await ws.send('{"type": "no_such_message"}')
        await ws.send(b"\x00")  # an odd number of bytes is not PCM16
        await asyncio.sleep(0.5)
    after = await scrape(server)
    moved = {
        dict(labels)["code"]
        for (name, labels), v in after.items()
        if name == "voicebot_protocol_errors_total" and v > before.get((name, labels), 0.0)
    }
    assert len(moved) == 2, moved


def test_no_gpu_means_no_gpu_samples_and_no_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_driver() -> None:
        raise pynvml.NVMLError(pynvml.NVML_ERROR_DRIVER_NOT_LOADED)

    monkeypatch.setattr(pynvml, "nvmlInit", no_driver)
    text = VoicebotMetrics(models_loaded=lambda: ["stt.whisper"]).render().decode()
    scraped = samples(text)
    assert not [key for key in scraped if key[0].startswith("voicebot_gpu_")]
    assert value(scraped, "voicebot_models_loaded", model="stt.whisper") == 1


def test_gpu_readings_become_per_gpu_gauges(
    fake_nvml: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_nvml(cards.L4, cards.H100)
    busy = {cards.L4.name: 35, cards.H100.name: 90}
    monkeypatch.setattr(
        pynvml,
        "nvmlDeviceGetUtilizationRates",
        lambda card: SimpleNamespace(gpu=busy[card.name], memory=0),
    )
    scraped = samples(VoicebotMetrics().render().decode())
    l4, h100 = {"gpu": "0", "name": cards.L4.name}, {"gpu": "1", "name": cards.H100.name}
    assert value(scraped, "voicebot_gpu_memory_used_bytes", **l4) == cards.L4.used_bytes
    assert value(scraped, "voicebot_gpu_memory_total_bytes", **h100) == cards.H100.total_bytes
    assert value(scraped, "voicebot_gpu_utilization_ratio", **l4) == 0.35
    assert value(scraped, "voicebot_gpu_utilization_ratio", **h100) == 0.9


def test_apps_have_their_own_registries() -> None:
    first, second = VoicebotMetrics(gpu=False), VoicebotMetrics(gpu=False)
    first.protocol_error("invalid_message")
    assert value(samples(second.render().decode()), "voicebot_protocol_errors_total") == 0
    scraped = samples(first.render().decode())
    assert value(scraped, "voicebot_protocol_errors_total", code="invalid_message") == 1


def ask(text: str) -> LLMContextFrame:
    return LLMContextFrame(LLMContext(messages=[{"role": "user", "content": text}]))


async def test_llm_failovers_are_counted_once_each_with_their_providers() -> None:
    metrics = VoicebotMetrics(gpu=False)
    llm = FailoverLLMService(
        primary=FakeLLMService(fail="raise", retryable=True),
        fallback=FakeLLMService(reply="From the fallback."),
        cooldown_secs=0,
    )
    observer = MetricsObserver(metrics=metrics, transport="ws")
    await run_test(llm, frames_to_send=[ask("One?"), ask("Two?")], observers=[observer])
    scraped = samples(metrics.render().decode())
    labels = {
        "stage": "llm",
        "from_provider": "FakeLLMService",
        "to_provider": "FakeLLMService",
        "retryable": "true",
    }
    assert value(scraped, "voicebot_failovers_total", **labels) == 2


async def test_interruptions_count_only_when_the_user_cuts_the_bot_off() -> None:
    metrics = VoicebotMetrics(gpu=False)
    observer = MetricsObserver(metrics=metrics, transport="webrtc")
    source = FakeLLMService()

    async def push(frame: Frame) -> None:
        await observer.on_push_frame(
            FramePushed(
                source=source,
                destination=source,
                frame=frame,
                direction=FrameDirection.DOWNSTREAM,
                timestamp=0,
            )
        )

    await push(InterruptionFrame())  # the user starts a turn while the bot is silent
    await push(VADUserStoppedSpeakingFrame(stop_secs=0.2))
    await push(UserStoppedSpeakingFrame())
    await push(BotStartedSpeakingFrame())
    await push(InterruptionFrame())  # the user speaks over the bot
    await push(ErrorFrame(error="the LLM broke"))
    scraped = samples(metrics.render().decode())
    assert value(scraped, "voicebot_interruptions_total", transport="webrtc") == 1
    assert value(scraped, "voicebot_turns_total", transport="webrtc") == 1
    assert value(scraped, "voicebot_turn_latency_seconds_count", transport="webrtc") == 1
    # Measured from the last voiced sample: at least the VAD's stop window.
    assert value(scraped, "voicebot_turn_latency_seconds_sum", transport="webrtc") >= 0.2
    assert value(scraped, "voicebot_errors_total", stage="llm", code="pipeline_error") == 1
