"""Runs one conversation on a transport until the client leaves."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import Any

from loguru import logger
from pipecat.observers.base_observer import BaseObserver
from pipecat.pipeline.worker import PipelineWorker
from pipecat.transports.base_transport import BaseTransport
from pipecat.workers.runner import WorkerRunner

from voicebot.config import Settings
from voicebot.models import SharedModels
from voicebot.observability.conversation_log import ConversationLogObserver
from voicebot.observability.metrics_observer import SessionMetrics
from voicebot.pipeline import build_worker

# Attaches a transport's own end-of-session rules (Daily: join watchdog, empty room).
Lifecycle = Callable[[PipelineWorker], None]


async def run_session(
    transport: BaseTransport,
    models: SharedModels,
    settings: Settings,
    *,
    session_id: str | None = None,
    observers: Sequence[BaseObserver] = (),
    enable_rtvi: bool = False,
    lifecycle: Lifecycle | None = None,
    metrics: SessionMetrics | None = None,
) -> None:
    """Build the session's pipeline on `transport` and run it until the session ends.

    Without `lifecycle` the session ends when the client disconnects; with one, the
    lifecycle decides (it is given the worker to cancel). `metrics` counts the session
    and observes its turns for /metrics.
    """
    session_id = session_id or uuid.uuid4().hex[:12]
    log = logger.bind(session=session_id)
    observers = [*observers, ConversationLogObserver(session_id=session_id)]
    if metrics is not None:
        observers.append(metrics.observer())
    worker = build_worker(
        transport,
        models,
        settings,
        observers=observers,
        enable_rtvi=enable_rtvi,
        conversation_id=session_id,
    )

    if lifecycle is not None:
        lifecycle(worker)
    else:

        @transport.event_handler("on_client_disconnected")
        async def on_client_disconnected(_transport: BaseTransport, *_args: Any) -> None:
            log.info("client disconnected")
            await worker.cancel(reason="client disconnected")

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    log.info("session started")
    try:
        with metrics.running() if metrics is not None else nullcontext():
            await runner.run()
    finally:
        log.info("session ended")
