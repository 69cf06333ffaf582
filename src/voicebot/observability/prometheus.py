"""Prometheus metrics for one app: what sessions, turns and stages did, plus GPU state at scrape.

Every label value comes from a small fixed set (transport kinds, stage names, error codes,
provider class names), never from a session, so the number of series stays bounded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from loguru import logger
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Seconds: a good turn is well under 1 s; CPU turns on 2 cores take a few.
LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 13.0)
RTF_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0)


class VoicebotMetrics:
    """The app's metrics in their own registry, so several apps can live in one process."""

    def __init__(
        self,
        *,
        models_loaded: Callable[[], list[str]] = list,
        gpu: bool = True,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.turn_latency = Histogram(
            "voicebot_turn_latency_seconds",
            "The user's last voiced sample to the first bot audio sent (server side).",
            ["transport"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.stt_seconds = Histogram(
            "voicebot_stt_seconds",
            "Time to transcribe one utterance.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.stt_rtf = Histogram(
            "voicebot_stt_rtf",
            "STT real-time factor: processing seconds per second of audio.",
            buckets=RTF_BUCKETS,
            registry=r,
        )
        self.llm_ttft = Histogram(
            "voicebot_llm_ttft_seconds",
            "LLM time to first token.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.tts_first_audio = Histogram(
            "voicebot_tts_first_audio_seconds",
            "TTS time from text to its first audio.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.llm_queue_wait = Histogram(
            "voicebot_llm_queue_seconds",
            "Time a reply waited for an in-process LLM shared by every session.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.sessions = Counter("voicebot_sessions", "Sessions started.", ["transport"], registry=r)
        self.active_sessions = Gauge(
            "voicebot_active_sessions", "Sessions running now.", ["transport"], registry=r
        )
        self.turns = Counter("voicebot_turns", "User turns ended.", ["transport"], registry=r)
        self.interruptions = Counter(
            "voicebot_interruptions",
            "Times the user spoke over the bot and cut it off.",
            ["transport"],
            registry=r,
        )
        self.errors = Counter("voicebot_errors", "Pipeline errors.", ["stage", "code"], registry=r)
        self.protocol_errors = Counter(
            "voicebot_protocol_errors",
            "Client messages refused by a WebSocket protocol.",
            ["code"],
            registry=r,
        )
        self.failovers = Counter(
            "voicebot_failovers",
            "Turns a stage's fallback provider took over from its primary.",
            ["stage", "from_provider", "to_provider", "retryable"],
            registry=r,
        )
        self.refusals = Counter(
            "voicebot_refusals",
            "Requests and sessions refused by access control or limits (server/limits.py).",
            ["reason"],
            registry=r,
        )
        self.session_ends = Counter(
            "voicebot_session_limit_ends",
            "Sessions the server ended: idle timeout or session time limit.",
            ["reason"],
            registry=r,
        )
        r.register(_ModelsCollector(models_loaded))
        r.register(_QueueCollector())
        r.register(_BreakersCollector())
        if gpu:
            r.register(_GPUCollector())

    def protocol_error(self, code: str) -> None:
        self.protocol_errors.labels(code=code).inc()

    def refusal(self, reason: str) -> None:
        """Count one refusal; `reason` is one of server/limits.py's REFUSAL_REASONS."""
        self.refusals.labels(reason=reason).inc()

    def render(self) -> bytes:
        """The text exposition format, for GET /metrics."""
        text: bytes = generate_latest(self.registry)
        return text


class _ModelsCollector(Collector):
    def __init__(self, names: Callable[[], list[str]]) -> None:
        self._names = names

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "voicebot_models_loaded", "Shared models loaded (1 per model).", labels=["model"]
        )
        for name in self._names():
            family.add_metric([name], 1.0)
        yield family


class _QueueCollector(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily]:
        from voicebot.providers.llm.local import ModelQueue

        family = GaugeMetricFamily(
            "voicebot_llm_queue_waiting",
            "Replies waiting now for an in-process LLM shared by every session.",
            labels=["model"],
        )
        for queue in ModelQueue.all():
            family.add_metric([queue.name], float(queue.waiting))
        yield family


class _BreakersCollector(Collector):
    """Each remote provider's circuit breaker (providers/breaker.py), read at scrape time."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from voicebot.providers.breaker import summary

        family = GaugeMetricFamily(
            "voicebot_circuit_breaker_state",
            "A remote provider's circuit breaker: 0 closed, 1 half-open (one trial), "
            "2 open (skipped by every session for the cool-down).",
            labels=["stage", "provider"],
        )
        value = {"closed": 0.0, "half_open": 1.0, "open": 2.0}
        for name, state in summary().items():
            family.add_metric(name.split("/", 1), value[state])
        yield family


class _GPUCollector(Collector):
    """Per-GPU memory and utilisation read through NVML at scrape time; no GPU, no samples."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        memory = GaugeMetricFamily(
            "voicebot_gpu_memory_used_bytes", "GPU memory in use.", labels=["gpu", "name"]
        )
        total = GaugeMetricFamily(
            "voicebot_gpu_memory_total_bytes", "GPU memory in all.", labels=["gpu", "name"]
        )
        utilisation = GaugeMetricFamily(
            "voicebot_gpu_utilization_ratio",
            "Fraction of the last sample period the GPU was busy.",
            labels=["gpu", "name"],
        )
        for index, name, used, size, busy in _read_gpus():
            labels = [str(index), name]
            memory.add_metric(labels, used)
            total.add_metric(labels, size)
            utilisation.add_metric(labels, busy)
        yield from (memory, total, utilisation)


def _read_gpus() -> list[tuple[int, str, float, float, float]]:
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:  # no driver or no GPU: the metrics simply have no samples
        return []
    gpus: list[tuple[int, str, float, float, float]] = []
    try:
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle: Any = pynvml.nvmlDeviceGetHandleByIndex(index)
            info = pynvml.nvmlDeviceGetMemoryInfo(handle)
            rates = pynvml.nvmlDeviceGetUtilizationRates(handle)
            name = pynvml.nvmlDeviceGetName(handle)
            name = name.decode() if isinstance(name, bytes) else name
            gpus.append((index, name, float(info.used), float(info.total), rates.gpu / 100))
    except pynvml.NVMLError as e:  # a GPU fallen off the bus must not fail the scrape
        logger.bind(error=str(e)).warning("reading GPU metrics failed")
    finally:
        pynvml.nvmlShutdown()
    return gpus
