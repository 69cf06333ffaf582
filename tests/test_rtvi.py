"""RTVI clients never get a cut-off reply's left-over text with the next reply."""

from __future__ import annotations

from typing import Any

from pipecat.frames.frames import InterruptionFrame, LLMTextFrame
from pipecat.observers.base_observer import FramePushed
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.processors.frameworks.rtvi import RTVIObserver, RTVIProcessor

from voicebot.observability.rtvi import VoicebotRTVIProcessor


async def _bot_transcriptions(processor: RTVIProcessor, texts: list[str | None]) -> list[str]:
    """Feed LLM text (None = an interruption) to the processor's observer; collect
    the `bot-transcription` messages it sends."""
    observer = processor.create_rtvi_observer()
    sent: list[str] = []

    async def capture(message: Any, **_kwargs: Any) -> None:
        if getattr(message, "type", None) == "bot-transcription":
            sent.append(message.data.text)

    observer.send_rtvi_message = capture  # type: ignore[method-assign]
    source, destination = FrameProcessor(), FrameProcessor()
    for text in texts:
        frame = InterruptionFrame() if text is None else LLMTextFrame(text=text)
        await observer.on_push_frame(
            FramePushed(source, destination, frame, FrameDirection.DOWNSTREAM, 0)
        )
    return sent


async def test_interruption_drops_the_unfinished_sentence() -> None:
    cut_reply = ["The", " dragon", None]
    next_reply = ["The", " dragon", " slept."]
    sent = await _bot_transcriptions(VoicebotRTVIProcessor(), cut_reply + next_reply)
    assert sent == ["The dragon slept."]


async def test_pipecats_own_observer_keeps_the_left_over() -> None:
    # Documents the Pipecat 1.14 behaviour the subclass exists for; when an upgrade
    # fixes it, this test fails and the subclass can go.
    sent = await _bot_transcriptions(RTVIProcessor(), ["The", None, "The", " dragon", " slept."])
    assert sent == ["TheThe dragon slept."]
    assert isinstance(RTVIProcessor().create_rtvi_observer(), RTVIObserver)
