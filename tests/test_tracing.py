"""Tracing: with observability.tracing on, a turn yields timed STT, LLM and TTS spans inside it."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.helpers import tweak
from voicebot.config import Settings, TracingSettings
from voicebot.models import SharedModels
from voicebot.observability.tracing import setup_tracing
from voicebot.tools.client import run_turn
from voicebot.tools.local_server import LocalServer

_EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module")
def exporter() -> InMemorySpanExporter:
    """An in-memory exporter on the process's tracer provider (OpenTelemetry allows one)."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
    return _EXPORTER


@pytest.fixture
def spans(exporter: InMemorySpanExporter) -> Iterator[InMemorySpanExporter]:
    exporter.clear()
    yield exporter
    exporter.clear()


def by_name(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def test_tracing_is_off_by_default() -> None:
    assert setup_tracing(Settings().observability.tracing) is False


def test_an_installed_tracer_provider_is_kept(exporter: InMemorySpanExporter) -> None:
    provider = trace.get_tracer_provider()
    assert setup_tracing(TracingSettings(enabled=True)) is True
    assert trace.get_tracer_provider() is provider


async def test_a_traced_turn_has_timed_stt_llm_and_tts_spans(
    settings: Settings,
    models: SharedModels,
    question_pcm: dict[str, np.ndarray],
    spans: InMemorySpanExporter,
) -> None:
    traced = tweak(settings, observability={"tracing": TracingSettings(enabled=True)})
    async with LocalServer(traced, models=models) as server:
        result = await run_turn(server.ws_url, question_pcm["capital"])
    assert result.reply_audio_s > 0

    finished = spans.get_finished_spans()
    turns = by_name(finished, "turn")
    assert turns, f"no turn span among {sorted({s.name for s in finished})}"
    turn_ids = {t.context.trace_id for t in turns}
    for stage in ("stt", "llm", "tts"):
        stage_spans = by_name(finished, stage)
        assert stage_spans, f"no {stage} span among {sorted({s.name for s in finished})}"
        for span in stage_spans:
            assert span.start_time is not None and span.end_time is not None
            assert span.end_time > span.start_time, f"{stage} span has no duration"
        # Service spans sit inside the turn's trace.
        assert {s.context.trace_id for s in stage_spans} & turn_ids, stage


async def test_an_untraced_server_makes_no_spans(
    server: LocalServer, question_pcm: dict[str, np.ndarray], spans: InMemorySpanExporter
) -> None:
    result = await run_turn(server.ws_url, question_pcm["capital"])
    assert result.reply_audio_s > 0
    # FastAPI traces its own dependencies whenever a provider exists; Pipecat must not.
    pipecat_names = {"conversation", "turn", "stt", "llm", "tts"}
    assert [s.name for s in spans.get_finished_spans() if s.name in pipecat_names] == []
