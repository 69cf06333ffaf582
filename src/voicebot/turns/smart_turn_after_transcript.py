"""smart-turn weighs a pause only when the pause's transcript does not read complete.

Pipecat's `TurnAnalyzerUserTurnStopStrategy` runs smart-turn's model at every VAD stop,
at the moment Whisper starts on the same words. On a 2-core CPU the two compete: the
model's ~0.15 CPU-s made Whisper's transcript 50-100 ms later, on every turn. Yet when
the transcript reads complete, `CompleteTranscriptUserTurnStopStrategy` ends the turn
and smart-turn's verdict is never used.

This strategy gives smart-turn the same audio (what it has heard up to the VAD's stop)
but asks it only once the transcript has come and does not read complete; the audio
that arrives meanwhile is held back and handed over afterwards, so the silence limit
(`turn.max_silence_secs`, counted from the VAD's stop) is kept exactly. It is listed
after the complete-transcript strategy, with the same `reads_complete` rule.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from pipecat.audio.turn.base_turn_analyzer import EndOfTurnState
from pipecat.audio.turn.smart_turn.base_smart_turn import BaseSmartTurn
from pipecat.frames.frames import (
    Frame,
    InputAudioRawFrame,
    MetricsFrame,
    SpeechControlParamsFrame,
    StartFrame,
    TranscriptionFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.processors.frame_processor import FrameProcessorSetup
from pipecat.turns.types import ProcessFrameResult
from pipecat.turns.user_stop.base_user_turn_stop_strategy import BaseUserTurnStopStrategy

from voicebot.turns.complete_transcript import reads_complete

# A turn opened by a transcript alone (it came after the turn's stop watchdog) ends this
# long after its last transcript, as in Pipecat's strategy: Whisper's p99 (0.6 s) less
# the VAD's stop (0.2 s).
TRANSCRIPT_ONLY_WAIT_S = 0.4


class SmartTurnAfterTranscriptStopStrategy(BaseUserTurnStopStrategy):
    """Ends a turn on smart-turn's verdict or its silence limit, asked after the transcript.

    - A transcript that reads complete (`complete`) is left to the complete-transcript
      strategy (listed first, it has usually ended the turn already): the model does
      not run.
    - Otherwise the model judges the audio up to the VAD's stop (`analyzed`); a complete
      verdict ends the turn (`ended_by_model`).
    - Otherwise the silence limit ends it, with the words in hand (`ended_by_silence`).
    - New speech withdraws every verdict, as in Pipecat's strategy.
    """

    def __init__(
        self,
        *,
        turn_analyzer: BaseSmartTurn,
        complete: Callable[[str], bool] = reads_complete,
        transcript_only_wait_s: float = TRANSCRIPT_ONLY_WAIT_S,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._analyzer = turn_analyzer
        self._complete = complete
        self._transcript_only_wait_s = transcript_only_wait_s
        self._text: list[str] = []
        self._speaking = False
        # VAD reported a stop this turn and no speech since.
        self._paused = False
        # Audio since the VAD's stop, held from the analyzer until it has judged the pause.
        self._holding = False
        self._held: list[bytes] = []
        self._held_s = 0.0
        # The silence limit ran out: the turn ends as soon as there are words.
        self._silence_ran_out = False
        self._timer: asyncio.Task[None] | None = None
        self.analyzed = 0
        self.ended_by_model = 0
        self.ended_by_silence = 0

    async def setup(self, setup: FrameProcessorSetup) -> None:  # type: ignore[override]
        await super().setup(setup)
        self._analyzer.set_sample_rate(setup.audio_in_sample_rate)

    async def cleanup(self) -> None:
        await super().cleanup()
        await self._cancel_timer()
        await self._analyzer.cleanup()

    async def handle_user_turn_started(self) -> None:
        await self._reset()

    async def handle_user_turn_stopped(self) -> None:
        await self._reset()
        self._holding = False
        self._held, self._held_s = [], 0.0
        self._analyzer.clear()

    async def _reset(self) -> None:
        self._text = []
        self._paused = False
        self._silence_ran_out = False
        await self._cancel_timer()

    async def process_frame(self, frame: Frame) -> ProcessFrameResult:
        await super().process_frame(frame)
        if isinstance(frame, StartFrame):
            # What the analyzer's parameters are, for the aggregator (as Pipecat's does).
            await self.broadcast_frame(SpeechControlParamsFrame, turn_params=self._analyzer.params)
        elif isinstance(frame, VADUserStartedSpeakingFrame):
            self._analyzer.update_vad_start_secs(frame.start_secs)
            self._release_held()
            self._speaking = True
            self._paused = False
            self._silence_ran_out = False
            await self._cancel_timer()
        elif isinstance(frame, VADUserStoppedSpeakingFrame):
            self._speaking = False
            self._paused = True
            self._holding = True
        elif isinstance(frame, InputAudioRawFrame):
            await self._audio(frame.audio)
        elif isinstance(frame, TranscriptionFrame) and frame.text.strip():
            self._text.append(frame.text.strip())
            await self._transcript()
        return ProcessFrameResult.CONTINUE

    async def _audio(self, audio: bytes) -> None:
        if self._holding:
            self._held.append(audio)
            self._held_s += len(audio) / 2 / self._analyzer.sample_rate
            if self._held_s < self._analyzer.params.stop_secs:
                return
            # The silence limit is reached with no verdict asked for: count it now.
            self._release_held()
            await self._maybe_end()
            return
        if self._analyzer.append_audio(audio, self._speaking) == EndOfTurnState.COMPLETE:
            self._silence_ran_out = True
            await self._maybe_end()

    def _release_held(self) -> None:
        """Hand the held audio to the analyzer, in order; it counts its silence."""
        held, self._held, self._held_s, self._holding = self._held, [], 0.0, False
        for audio in held:
            if self._analyzer.append_audio(audio, False) == EndOfTurnState.COMPLETE:
                self._silence_ran_out = True

    async def _transcript(self) -> None:
        if self._speaking:
            return  # more words are coming; the next pause decides
        if self._silence_ran_out:
            await self._maybe_end()
        elif not self._paused:
            # No VAD stop this turn: the turn was opened by a late transcript.
            await self._cancel_timer()
            self._timer = self.task_manager.create_task(
                self._end_after(self._transcript_only_wait_s), f"{self}::transcript_only"
            )
        elif self._holding and not self._complete(" ".join(self._text)):
            # A transcript that reads complete is the complete-transcript strategy's.
            await self._judge_pause()

    async def _judge_pause(self) -> None:
        self.analyzed += 1
        state, metrics = await self._analyzer.analyze_end_of_turn()
        if metrics is not None:
            await self.push_frame(MetricsFrame(data=[metrics]))
        if state == EndOfTurnState.COMPLETE:
            # The analyzer cleared its buffer; the held silence belongs to no turn now.
            self._held, self._held_s, self._holding = [], 0.0, False
            self.ended_by_model += 1
            await self.trigger_user_turn_stopped()
            return
        self._release_held()
        await self._maybe_end()

    async def _maybe_end(self) -> None:
        if self._silence_ran_out and self._text and not self._speaking:
            self.ended_by_silence += 1
            await self.trigger_user_turn_stopped()

    async def _end_after(self, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        self._timer = None
        if self._text and not self._speaking:
            await self.trigger_user_turn_stopped()

    async def _cancel_timer(self) -> None:
        if self._timer is not None:
            timer, self._timer = self._timer, None
            await self.task_manager.cancel_task(timer)
