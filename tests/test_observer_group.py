"""ObserverGroup: a session's observers behind one Pipecat observer task, each told as before."""

from __future__ import annotations

from typing import Any

from pipecat.frames.frames import Frame, TextFrame
from pipecat.observers.base_observer import BaseObserver, FrameProcessed, FramePushed
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.tests.utils import run_test
from pipecat.transports.base_transport import BaseTransport

from voicebot.config import Settings
from voicebot.models import SharedModels
from voicebot.observability.observer_group import ObserverGroup
from voicebot.pipeline import build_worker


class Pushes(BaseObserver):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.frames: list[Frame] = []
        self.started = 0

    async def on_pipeline_started(self) -> None:
        self.started += 1

    async def on_push_frame(self, data: FramePushed) -> None:
        if isinstance(data.frame, TextFrame):
            self.frames.append(data.frame)


class Processed(BaseObserver):
    def __init__(self) -> None:
        super().__init__(observe_every_push=False)
        self.processed: list[str] = []

    async def on_process_frame(self, data: FrameProcessed) -> None:
        if isinstance(data.frame, TextFrame):
            self.processed.append(data.processor.name)


class Relay(FrameProcessor):
    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)


async def test_each_observer_sees_what_it_would_alone() -> None:
    once, every, processed = Pushes(observe_every_push=False), Pushes(), Processed()
    group = ObserverGroup([once, every, processed])
    text = TextFrame("hello")
    await run_test(
        Relay(name="first"),
        frames_to_send=[text],
        expected_down_frames=[TextFrame],
        observers=[group],
    )
    # Only its first push for `once`; every hop (into the processor, out of it) for `every`.
    assert once.frames == [text]
    assert len(every.frames) > 1 and all(f is text for f in every.frames)
    assert "first" in processed.processed
    assert once.started == every.started == 1
    assert group.observe_every_push  # because `every` wants every push


def test_processed_frames_go_only_to_observers_that_look_at_them() -> None:
    quiet, looking = Pushes(observe_every_push=False), Processed()
    group = ObserverGroup([quiet, looking])
    assert not group.observe_every_push
    assert group._processing == [looking]


class RelayTransport(BaseTransport):
    def __init__(self) -> None:
        super().__init__()
        self._in, self._out = Relay(name="in"), Relay(name="out")

    def input(self) -> FrameProcessor:
        return self._in

    def output(self) -> FrameProcessor:
        return self._out


def _observers(worker: Any) -> list[BaseObserver]:
    return list(worker._observer._observers)


def test_a_session_has_one_observer_task_for_its_own(
    settings: Settings, models: SharedModels
) -> None:
    mine = [Pushes(), Processed()]
    worker = build_worker(RelayTransport(), models, settings, observers=mine)
    groups = [o for o in _observers(worker) if isinstance(o, ObserverGroup)]
    assert len(groups) == 1 and groups[0].observers == mine
    # Pipecat's turn tracking feeds only its tracing: without tracing it is not started.
    assert not settings.observability.tracing.enabled
    assert worker.turn_tracking_observer is None
