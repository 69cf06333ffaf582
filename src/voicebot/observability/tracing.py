"""Switches on Pipecat's OpenTelemetry tracing: a span per turn, with STT, LLM and TTS spans inside.

Off by default; when off nothing is imported and PipelineWorker adds no observers.
"""

from __future__ import annotations

from loguru import logger

from voicebot.config import TracingSettings
from voicebot.errors import ConfigError


def setup_tracing(tracing: TracingSettings) -> bool:
    """Install an OTLP/HTTP exporter for Pipecat's spans; returns whether tracing is on.

    A process that already has an OpenTelemetry SDK tracer provider (an embedding
    application, a test with an in-memory exporter) keeps it: spans go where it says.
    """
    if not tracing.enabled:
        return False
    try:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace import TracerProvider
        from pipecat.utils.tracing.setup import setup_tracing as pipecat_setup_tracing
    except ImportError as e:
        raise ConfigError(
            "observability.tracing.enabled needs OpenTelemetry: pip install 'voicebot[tracing]'"
        ) from e
    log = logger.bind(service_name=tracing.service_name)
    if isinstance(trace.get_tracer_provider(), TracerProvider):
        log.info("tracing on: using the tracer provider already installed")
        return True
    endpoint = f"{tracing.otlp_endpoint.rstrip('/')}/v1/traces"
    exporter = OTLPSpanExporter(endpoint=endpoint)
    if not pipecat_setup_tracing(service_name=tracing.service_name, exporter=exporter):
        raise ConfigError("observability.tracing: OpenTelemetry tracer provider setup failed")
    log.bind(endpoint=endpoint).info("tracing on: exporting spans over OTLP/HTTP")
    return True
