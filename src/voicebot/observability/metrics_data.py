"""Metrics Pipecat has no type for, carried in ordinary MetricsFrames."""

from __future__ import annotations

from pipecat.metrics.metrics import MetricsData


class RTFMetricsData(MetricsData):
    """Real-time factor of one utterance: processing seconds per second of audio."""

    value: float


class TokensPerSecondMetricsData(MetricsData):
    """LLM decoding speed of one reply, from its first token to its last."""

    value: float


class FallbackMetricsData(MetricsData):
    """A stage's primary provider failed and its fallback took over; `value` counts them.

    `retryable` says whether the last failure may pass by itself (see ProviderError).
    """

    value: int
    retryable: bool = True


class QueueWaitMetricsData(MetricsData):
    """Seconds a reply waited for its turn on a model shared by every session."""

    value: float
