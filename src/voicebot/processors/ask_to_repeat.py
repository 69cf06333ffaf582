"""When the bot asks the person to repeat, and in a fixed phrase, not words the LLM makes up.

`RepeatRequests` decides which turns without words get a request to repeat (Pipecat's
empty-user-turn recovery) and which get no answer.

For such a turn Pipecat's user aggregator adds an instruction to the context as a
developer message ("The user may have said something while you were responding, but it
was not recognized. ... Briefly ask them to repeat ...") and runs the LLM. The bundled
SmolLM2 cannot follow it: it read it out ("I'm sorry, The user may have said something
while you were responding"), or answered something else, for each of eight phrasings
tried on three conversations. `AskToRepeat`, just before the LLM, takes that context
frame instead: it drops the instruction from the context and has the TTS speak `phrase`,
which the assistant aggregator then adds to the context as the bot's reply.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pipecat.frames.frames import Frame, LLMContextFrame, TTSSpeakFrame
from pipecat.processors.aggregators.llm_response_universal import (
    LLMAssistantAggregator,
    LLMUserAggregator,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.turns.empty_user_turn import (
    DEFAULT_EMPTY_USER_TURN_INTERRUPTED_PROMPT,
    EmptyUserTurnConfig,
)

# The developer message for a turn in which the person spoke while the bot waited and
# Whisper could not make out the words (Pipecat's own prompt is for a cut-off reply).
UNCLEAR_SPEECH_PROMPT = (
    "The user said something, but it was not recognized. Briefly ask them to repeat it."
)
# Every instruction `AskToRepeat` speaks the phrase for.
REPEAT_INSTRUCTIONS = (DEFAULT_EMPTY_USER_TURN_INTERRUPTED_PROMPT, UNCLEAR_SPEECH_PROMPT)


class RepeatRequests:
    """Which turns that end without words make the bot ask the person to repeat.

    - One that cut the bot's reply off, from the first reply on. Such a turn is speech:
      it passed the stricter barge-in VAD, and then Whisper heard no words ("Tell me
      something funny, | please!": the turn ended at the pause, "please" cut the reply
      off and was not recognised). Unanswered, the question was dropped. Pipecat counts a
      turn before the bot's first reply as interrupting too; noise then would get
      "please repeat" unprompted, so that waits for the first reply.
    - One in which Whisper heard speech it could not make out (the STT's
      `on_unclear_speech`: "Please set an alarm for seven in the morning" in a slow
      British espeak voice, every segment dropped for the low probability of its words),
      at any time, the first turn of a session included. Unanswered, the person was met
      with silence.

    Any other turn without words (a cough, noise, a click) gets no answer, as with
    Pipecat's defaults. Pipecat answers at most `max_consecutive_recoveries` (1) such
    turns in a row.
    """

    def __init__(self, config: EmptyUserTurnConfig) -> None:
        self.config = config
        self._replied = False
        self._turn_started()

    def attach(
        self,
        user: LLMUserAggregator,
        assistant: LLMAssistantAggregator,
        stt: FrameProcessor | None = None,
    ) -> None:
        """Follow the turns of `user` and `assistant`, and the unclear speech `stt` reports
        if it says it does (`REPORTS_UNCLEAR_SPEECH`, with an `on_unclear_speech` event:
        our Whisper service)."""
        user.add_event_handler("on_user_turn_started", self._on_user_turn_started)
        assistant.add_event_handler("on_assistant_turn_stopped", self._on_reply_stopped)
        if getattr(stt, "REPORTS_UNCLEAR_SPEECH", False):
            assert stt is not None
            stt.add_event_handler("on_unclear_speech", self._on_unclear_speech)

    def _turn_started(self) -> None:
        self.config.interrupted_prompt = (
            DEFAULT_EMPTY_USER_TURN_INTERRUPTED_PROMPT if self._replied else None
        )
        self.config.idle_prompt = None

    async def _on_user_turn_started(self, *_: Any) -> None:
        self._turn_started()

    async def _on_reply_stopped(self, *_: Any) -> None:
        self._replied = True
        self.config.interrupted_prompt = DEFAULT_EMPTY_USER_TURN_INTERRUPTED_PROMPT

    async def _on_unclear_speech(self, *_: Any) -> None:
        if self.config.interrupted_prompt is None:
            self.config.interrupted_prompt = UNCLEAR_SPEECH_PROMPT
        self.config.idle_prompt = UNCLEAR_SPEECH_PROMPT


class AskToRepeat(FrameProcessor):
    """Speaks `phrase` in place of an LLM run on one of the developer messages `instructions`."""

    def __init__(self, *, phrase: str, instructions: Sequence[str] = REPEAT_INSTRUCTIONS) -> None:
        super().__init__()
        self._instructions = tuple(instructions)
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
            and message.get("content") in self._instructions
        )
