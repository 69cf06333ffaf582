"""Answer a turn while its end is still being weighed, on Pipecat's speculation API.

The transcript of a pause is ready ~0.5 s after the speech stops; when it does not read
complete, smart-turn or `turn.max_silence_secs` decide later. Meanwhile the LLM can
already answer that transcript: Pipecat's `LLMService` holds a speculative reply in its
`SpeculationGate` until the turn's `UserStoppedSpeakingFrame` releases it, and drops it
on an `EagerEndOfTurnCancelFrame` (the generation is stopped, nothing reaches TTS, the
transport or the context).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Any

from loguru import logger
from pipecat.frames.frames import (
    Frame,
    TranscriptionFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessorSetup
from pipecat.turns.types import ProcessFrameResult, UserTurnSpeculation
from pipecat.turns.user_stop.base_user_turn_stop_strategy import (
    BaseUserTurnStopStrategy,
    UserTurnStoppedParams,
)

from voicebot.turns.complete_transcript import plainly_goes_on
from voicebot.turns.segments import NoWordsFrame, spoken_since
from voicebot.turns.sentence_end import SentenceEnds

# How often a held decision looks again at a voice the VAD has not confirmed yet, and at
# the silence the VAD has heard when it runs behind the clock, where it is not woken by
# each chunk of audio counted (`watch_audio`).
VOICE_POLL_S = 0.02
SILENCE_POLL_S = 0.005
# The longest a held decision sleeps before it looks again: words transcribed meanwhile
# change how long it must wait ("I need a gift for." held to `goes_on_secs`, then
# "My grandfather's birthday." arrives and the floor is enough).
RECHECK_S = 0.05
# How far the VAD's count of the silence may fall behind the clock before the clock
# decides: audio that stops coming (a muted microphone, a stalled transport) has no
# silence to count, and must not hold a turn open for ever.
VAD_LAG_LIMIT_S = 1.0


class SpeculativeUserTurnStopStrategy(BaseUserTurnStopStrategy):
    """Wraps the strategies that decide the end of a turn and answers ahead of them.

    `detectors` (ours, smart-turn, a silence timeout) see every frame, in order, as if
    they were listed themselves; their decisions pass through this strategy. When a
    final transcript arrives while the person is silent and no detector ends the turn
    on it, a speculative inference answers that transcript. When a detector then ends
    the turn and no words were added since, the turn is finalized without a second
    inference and the held reply is released. New speech withdraws the speculation, as
    does a turn that ends with other words or without a detector (the stop watchdog).

    Every speculation is bounded by the detectors: smart-turn's silence limit or the
    watchdog end the turn, and an unconfirmed one is withdrawn then.

    `min_silence_secs`: a detector that ends the turn sooner after the speech stopped is
    held to it; to `goes_on_secs` when the words so far plainly go on ("I need a gift
    for." ended by smart-turn's intonation at a pause in mid-sentence). The reply is
    answered speculatively meanwhile, so the wait costs little; a person who speaks again
    within it is not cut off. The wait is counted in the audio heard since the speech
    stopped (`silence_heard()`: the session's quiet since its last voiced chunk, or the
    VAD's silence, `SilenceOnset.pause_s`) where that is known, not on the
    clock: on a busy machine the VAD runs behind, and a clock would end the turn before
    the VAD has heard the person go on. At the end of the wait, a voice `hearing_voice()`
    reports but the VAD has not confirmed as speech yet holds the decision until it either
    becomes speech (the turn goes on) or fades (the turn ends). Either wait ends at the
    latest `vad_lag_limit_secs` after the clock has passed the floor. `watch_audio`, when
    given, registers a callback run after each chunk of audio is counted: a held decision
    then looks again on the chunk that completes the wait, not on its next poll.

    `sentence_ends`, when given, tells whether the LLM answering the words judged them to
    end a sentence (turns/sentence_end.py); such a turn is held to the shorter
    `sentence_end_secs` instead, or to `sure_sentence_end_secs` when the LLM is sure.
    The judgement comes with the speculative reply's first read of the prompt; a held
    decision looks again at least every `RECHECK_S`.
    """

    def __init__(
        self,
        *,
        detectors: Sequence[BaseUserTurnStopStrategy],
        min_silence_secs: float = 0.0,
        goes_on_secs: float = 0.0,
        hearing_voice: Callable[[], bool] | None = None,
        silence_heard: Callable[[], float] | None = None,
        watch_audio: Callable[[Callable[[], None]], None] | None = None,
        vad_lag_limit_secs: float = VAD_LAG_LIMIT_S,
        sentence_ends: SentenceEnds | None = None,
        sentence_end_secs: float = 0.0,
        sure_sentence_end_secs: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._detectors = list(detectors)
        self._min_silence_s = min_silence_secs
        self._sentence_ends = sentence_ends
        self._sentence_end_s = min(sentence_end_secs, min_silence_secs)
        self._sure_sentence_end_s = min(
            self._sentence_end_s if sure_sentence_end_secs is None else sure_sentence_end_secs,
            self._sentence_end_s,
        )
        self._goes_on_s = max(goes_on_secs, min_silence_secs)
        self._hearing_voice = hearing_voice or (lambda: False)
        self._speech_stopped_at = 0.0
        # Without the VAD's count, the clock since the speech stopped stands in for it.
        self._silence_heard = silence_heard or self._clock_s
        self._vad_lag_limit_s = vad_lag_limit_secs
        # Set after each chunk of audio is counted, where `watch_audio` tells (else never:
        # a held decision then looks again on its poll alone).
        self._audio_counted = asyncio.Event()
        if watch_audio is not None:
            watch_audio(self._audio_counted.set)
        # A detector ended the turn before `min_silence_secs`: its decision waits here.
        self._held_decision = False
        self._held_stop: asyncio.Task[None] | None = None
        self._text: list[str] = []
        self._speaking = False
        # Speech has started since the last transcript: its words are still to come.
        self._untranscribed = False
        self._turn_open = False
        self._speculation: str | None = None
        # A detector's end of turn matched the speculation: finalize without inference.
        self._confirming = False
        self.speculated = 0
        self.confirmed = 0
        self.withdrawn = 0
        self.held = 0

    @property
    def detectors(self) -> list[BaseUserTurnStopStrategy]:
        return list(self._detectors)

    # Pipecat narrows BaseObject.setup(task_manager) to the processor setup here.
    async def setup(self, setup: FrameProcessorSetup) -> None:  # type: ignore[override]
        await super().setup(setup)
        for detector in self._detectors:
            await detector.setup(setup)
            detector.add_event_handler("on_push_frame", self._on_push_frame)
            detector.add_event_handler("on_broadcast_frame", self._on_broadcast_frame)
            detector.add_event_handler("on_user_turn_inference_triggered", self._on_inference)
            detector.add_event_handler("on_user_turn_speculation_cancelled", self._on_cancelled)
            detector.add_event_handler("on_user_turn_stopped", self._on_stopped)

    async def cleanup(self) -> None:
        await self._drop_held_decision()
        for detector in self._detectors:
            await detector.cleanup()
            detector.remove_event_handler("on_push_frame", self._on_push_frame)
            detector.remove_event_handler("on_broadcast_frame", self._on_broadcast_frame)
            detector.remove_event_handler("on_user_turn_inference_triggered", self._on_inference)
            detector.remove_event_handler("on_user_turn_speculation_cancelled", self._on_cancelled)
            detector.remove_event_handler("on_user_turn_stopped", self._on_stopped)
        await super().cleanup()

    async def handle_user_turn_started(self) -> None:
        self._text = []
        self._turn_open = True
        self._confirming = False
        for detector in self._detectors:
            await detector.handle_user_turn_started()

    async def handle_user_turn_stopped(self) -> None:
        self._turn_open = False
        await self._drop_held_decision()
        # Still set here only when the turn ended without a detector confirming it.
        await self._withdraw("the turn ended without confirming it")
        self._text = []
        self._confirming = False
        for detector in self._detectors:
            await detector.handle_user_turn_stopped()

    async def process_frame(self, frame: Frame) -> ProcessFrameResult:
        transcript = isinstance(frame, TranscriptionFrame) and bool(frame.text.strip())
        if isinstance(frame, VADUserStartedSpeakingFrame):
            self._speaking = self._untranscribed = True
            await self._drop_held_decision()
            await self._withdraw("the person kept talking")
        elif isinstance(frame, VADUserStoppedSpeakingFrame):
            self._speaking = False
            self._speech_stopped_at = frame.timestamp - frame.stop_secs
        elif transcript:
            assert isinstance(frame, TranscriptionFrame)
            self._text.append(frame.text.strip())
            # An earlier segment's words, ready after the person spoke again, leave the
            # new speech untranscribed (turns/segments.py).
            if not spoken_since(frame):
                self._untranscribed = False
        elif isinstance(frame, NoWordsFrame) and not frame.spoken_since:
            # The last speech gave no words: the words before it are the turn's words.
            self._untranscribed = False
        for detector in self._detectors:
            if await detector.process_frame(frame) == ProcessFrameResult.STOP:
                break
        if transcript or (isinstance(frame, NoWordsFrame) and self._text):
            await self._maybe_speculate()
        return ProcessFrameResult.CONTINUE

    async def _maybe_speculate(self) -> None:
        # A detector that ended the turn on this transcript closed it already; a turn
        # without words (speech Whisper could not make out) has nothing to answer.
        if not self._turn_open or self._speaking or self._untranscribed or not self._text:
            return
        text = " ".join(self._text)
        if self._speculation == text:
            return
        await self._withdraw("new words arrived")
        self._speculation = text
        self.speculated += 1
        logger.debug("answering the turn speculatively while its end is weighed")
        await self.trigger_user_turn_inference_triggered(speculation=UserTurnSpeculation(text=text))

    async def _withdraw(self, reason: str) -> None:
        if self._speculation is None:
            return
        self._speculation = None
        self.withdrawn += 1
        logger.bind(reason=reason).debug("withdrawing the speculative reply")
        await self.trigger_user_turn_speculation_cancelled()

    async def _on_push_frame(
        self, _: BaseUserTurnStopStrategy, frame: Frame, direction: FrameDirection
    ) -> None:
        await self.push_frame(frame, direction)

    async def _on_broadcast_frame(
        self, _: BaseUserTurnStopStrategy, frame_cls: type[Frame], **kwargs: Any
    ) -> None:
        await self.broadcast_frame(frame_cls, **kwargs)

    async def _on_cancelled(self, _: BaseUserTurnStopStrategy) -> None:
        await self.trigger_user_turn_speculation_cancelled()

    def _clock_s(self) -> float:
        return time.time() - self._speech_stopped_at

    def _silence_needed_s(self) -> float:
        if self._speaking:
            return 0.0
        text = " ".join(self._text)
        if plainly_goes_on(text):
            return self._goes_on_s
        if self._sentence_ends is not None and self._sentence_ends.ends(text):
            if self._sentence_ends.ends(text, surely=True):
                return self._sure_sentence_end_s
            return self._sentence_end_s
        return self._min_silence_s

    def _clock_left_s(self) -> float:
        """Time until the clock ends the wait, however far behind the VAD has fallen."""
        return self._silence_needed_s() + self._vad_lag_limit_s - self._clock_s()

    def _silence_left_s(self) -> float:
        needed = self._silence_needed_s()
        if needed <= 0:
            return 0.0
        return min(needed - self._silence_heard(), self._clock_left_s())

    async def _on_inference(
        self, _: BaseUserTurnStopStrategy, speculation: UserTurnSpeculation | None
    ) -> None:
        if speculation is None and (
            self._held_decision or self._silence_left_s() > 0 or self._untranscribed
        ):
            # Too soon: answer speculatively now, end the turn when the silence is long enough.
            self._held_decision = True
            await self._maybe_speculate()
            return
        if speculation is None and self._speculation is not None:
            if self._speculation == " ".join(self._text):
                # The reply on its way answers exactly this turn.
                self._confirming = True
                return
            await self._withdraw("the turn ended with other words")
        await self.trigger_user_turn_inference_triggered(speculation=speculation)

    async def _on_stopped(self, _: BaseUserTurnStopStrategy, params: UserTurnStoppedParams) -> None:
        if self._held_decision:
            if self._held_stop is None:
                self.held += 1
                self._held_stop = self.task_manager.create_task(
                    self._stop_after_silence(params), f"{self}::held_stop"
                )
            return
        confirms = self._confirming or params.confirms_speculation
        self._confirming = False
        # Taken before finalizing, so the turn's end does not withdraw what it confirms.
        held, self._speculation = self._speculation, None
        await self.trigger_user_turn_finalized(
            enable_user_speaking_frames=params.enable_user_speaking_frames,
            confirms_speculation=confirms,
        )
        if self._turn_open:
            # Pipecat keeps a turn open while VAD hears speech: still a speculation.
            self._speculation = held
        elif confirms:
            self.confirmed += 1
            logger.debug("the held reply answers the turn")

    async def _stop_after_silence(self, params: UserTurnStoppedParams) -> None:
        # Until the VAD has heard the silence (it may run behind the clock), then while it
        # hears a voice it has not confirmed yet: if that is speech, the VAD's start
        # cancels this wait; if it fades, the turn ends. Both are looked at again after
        # each chunk of audio counted (or polled); the clock bounds both waits.
        while True:
            self._audio_counted.clear()
            left = self._silence_left_s()
            if left > 0:
                await self._look_again_within(min(max(left, SILENCE_POLL_S), RECHECK_S))
            elif (self._hearing_voice() or self._untranscribed) and self._clock_left_s() > 0:
                await self._look_again_within(VOICE_POLL_S)
            else:
                break
        self._held_stop = None
        self._held_decision = False
        # The detector's decision, now: confirm the speculation, or infer, then finalize.
        await self._on_inference(self, None)
        await self._on_stopped(self, params)

    async def _look_again_within(self, seconds: float) -> None:
        """Wait until the next chunk of audio is counted, `seconds` at the most."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._audio_counted.wait(), seconds)

    async def _drop_held_decision(self) -> None:
        self._held_decision = False
        if self._held_stop is not None:
            held, self._held_stop = self._held_stop, None
            await self.task_manager.cancel_task(held)
