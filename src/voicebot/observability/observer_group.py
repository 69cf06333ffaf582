"""Several observers behind one: Pipecat gives each observer its own queue and task."""

from __future__ import annotations

from collections.abc import Sequence

from pipecat.observers.base_observer import (
    BaseObserver,
    FrameProcessed,
    FramePushed,
    ProcessorSetUp,
)
from pipecat.utils.asyncio.task_manager import BaseTaskManager


class ObserverGroup(BaseObserver):
    """Passes what it observes to `observers`, in order, from one Pipecat observer task.

    A pipeline worker queues every frame push and every frame a processor handles (about
    four events per 20 ms of caller audio) to each of its observers, and wakes one task
    per observer for each. A session's own observers only want a few kinds of frame, so
    grouped they cost one queue and one wake-up per event instead of one each. Processed
    frames go only to the observers that look at them.
    """

    def __init__(self, observers: Sequence[BaseObserver]) -> None:
        super().__init__(observe_every_push=any(o.observe_every_push for o in observers))
        self._observers = list(observers)
        self._processing = [
            o for o in observers if type(o).on_process_frame is not BaseObserver.on_process_frame
        ]

    @property
    def observers(self) -> list[BaseObserver]:
        return list(self._observers)

    async def setup(self, task_manager: BaseTaskManager) -> None:
        await super().setup(task_manager)
        for observer in self._observers:
            await observer.setup(task_manager)

    async def cleanup(self) -> None:
        for observer in self._observers:
            await observer.cleanup()
        await super().cleanup()

    async def on_pipeline_started(self) -> None:
        for observer in self._observers:
            await observer.on_pipeline_started()

    async def on_push_frame(self, data: FramePushed) -> None:
        for observer in self._observers:
            if data.first_push or observer.observe_every_push:
                await observer.on_push_frame(data)

    async def on_process_frame(self, data: FrameProcessed) -> None:
        for observer in self._processing:
            await observer.on_process_frame(data)

    async def on_processor_setup(self, data: ProcessorSetUp) -> None:
        for observer in self._observers:
            await observer.on_processor_setup(data)
