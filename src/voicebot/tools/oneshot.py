"""One input through one pipeline stage, outside a session: what `chat` and `say` share."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from pipecat.frames.frames import EndFrame, Frame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.workers.runner import WorkerRunner


class _Sink(FrameProcessor):
    """Keeps the frames of one kind that reach the end of the pipeline, and when the first did."""

    def __init__(self, kind: type[Frame]) -> None:
        super().__init__()
        self._kind = kind
        self.frames: list[Frame] = []
        self.first_at: float | None = None

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, self._kind):
            if self.first_at is None:
                self.first_at = time.perf_counter()
            self.frames.append(frame)
        await self.push_frame(frame, direction)


@dataclass
class OneShot:
    frames: list[Frame] = field(default_factory=list)
    # From queuing the input to the first collected frame, and to the end of the run.
    first_ms: float | None = None
    elapsed_ms: float = 0.0


async def run_once(
    stage: FrameProcessor, inputs: list[Frame], collect: type[Frame], params: PipelineParams
) -> OneShot:
    """Run `inputs` through `stage` to the end and keep what it produced of type `collect`."""
    sink = _Sink(collect)
    worker = PipelineWorker(Pipeline([stage, sink]), params=params, enable_rtvi=False)
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    start = time.perf_counter()
    await worker.queue_frames([*inputs, EndFrame()])
    await runner.run()
    return OneShot(
        frames=sink.frames,
        first_ms=(sink.first_at - start) * 1000 if sink.first_at else None,
        elapsed_ms=(time.perf_counter() - start) * 1000,
    )
