"""Ask the person to repeat in a fixed phrase, not in words the LLM makes up.

A turn that cut the bot's reply off and in which Whisper heard no words makes Pipecat's
user aggregator add its interrupted-turn instruction to the context as a developer
message ("The user may have said something while you were responding, but it was not
recognized. ... Briefly ask them to repeat ...") and run the LLM
(`pipeline.ask_to_repeat_after_first_reply`). The bundled SmolLM2 cannot follow it: it
read it out ("I'm sorry, The user may have said something while you were responding"),
or answered something else, for each of eight phrasings tried on three conversations.
This processor, just before the LLM, takes that context frame instead: it drops the
instruction from the context and has the TTS speak `phrase`, which the assistant
aggregator then adds to the context as the bot's reply.
"""

from __future__ import annotations

from pipecat.frames.frames import Frame, LLMContextFrame, TTSSpeakFrame
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor


class AskToRepeat(FrameProcessor):
    """Speaks `phrase` in place of an LLM run on the developer message `instruction`."""

    def __init__(self, *, instruction: str, phrase: str) -> None:
        super().__init__()
        self._instruction = instruction
        self._phrase = phrase

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, LLMContextFrame):
            messages = frame.context.get_messages()
            if messages and self._is_instruction(messages[-1]):
                frame.context.set_messages(messages[:-1])
                await self.push_frame(TTSSpeakFrame(self._phrase))
                return
        await self.push_frame(frame, direction)

    def _is_instruction(self, message: object) -> bool:
        return (
            isinstance(message, dict)
            and message.get("role") == "developer"
            and message.get("content") == self._instruction
        )
