"""Mixin for a service that owns other Pipecat services and drives their lifecycle with its own."""

from __future__ import annotations

from typing import Any

from pipecat.frames.frames import CancelFrame, EndFrame, StartFrame
from pipecat.processors.frame_processor import FrameProcessor, FrameProcessorSetup


class ProviderOwner:
    """The owned services are not linked into the pipeline; the owner sets them up,
    starts, stops, cancels and cleans them up together with itself (primary first)."""

    @property
    def providers(self) -> tuple[FrameProcessor, ...]:
        raise NotImplementedError

    async def setup(self, setup: FrameProcessorSetup) -> None:
        parent: Any = super()
        await parent.setup(setup)
        for service in self.providers:
            await service.setup(setup)

    async def start(self, frame: StartFrame) -> None:
        parent: Any = super()
        await parent.start(frame)
        for service in self.providers:
            await service.start(frame)  # type: ignore[attr-defined]

    async def stop(self, frame: EndFrame) -> None:
        for service in self.providers:
            await service.stop(frame)  # type: ignore[attr-defined]
        parent: Any = super()
        await parent.stop(frame)

    async def cancel(self, frame: CancelFrame) -> None:
        for service in self.providers:
            await service.cancel(frame)  # type: ignore[attr-defined]
        parent: Any = super()
        await parent.cancel(frame)

    async def cleanup(self) -> None:
        for service in self.providers:
            await service.cleanup()
        parent: Any = super()
        await parent.cleanup()
