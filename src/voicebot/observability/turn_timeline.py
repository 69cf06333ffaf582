"""Where a served turn's time goes: each step's moment, from the person's last voiced sample.

The turn latency a client measures (last voiced sample sent -> first bot audio) is more
than the stage times added up: frames wait in queues, turn strategies wait for each
other, text waits for a clause. `TurnTimeline` reads the frames one session's pipeline
pushes (as an observer sees them, stamped by the pipeline clock) and, when the bot
starts speaking, gives the moment of every step in ms after the last voiced input
frame. The gaps between consecutive moments are where the time went.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    InputAudioRawFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    MetricsFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
    UserStoppedSpeakingFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.metrics.metrics import ProcessingMetricsData, TTFBMetricsData, TurnMetricsData
from pipecat.observers.base_observer import FramePushed
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.llm_service import LLMService
from pipecat.services.stt_service import STTService
from pipecat.services.tts_service import TTSService
from pipecat.transports.base_input import BaseInputTransport

from voicebot.audio.pcm import is_voiced

# The steps of a turn, in the order they normally happen (a speculative reply can
# start the LLM before the turn ends).
MOMENTS = (
    "vad_stop",  # VAD has heard `vad.stop_secs` of silence
    "stt_start",  # Whisper starts on the segment (the transcript minus its processing time)
    "stt_done",  # the transcript leaves the STT service
    "turn_end",  # a turn strategy ended the turn (UserStoppedSpeakingFrame)
    "llm_start",  # the LLM service starts on the context
    "llm_first_token",
    "first_clause",  # the first text handed to TTS (its first audio minus its TTFB)
    "tts_first_audio",
    "bot_started",  # the output transport starts sending the first audio
)

_NS_PER_MS = 1_000_000


@dataclass
class _Turn:
    speech_end_ns: int | None = None
    at_ns: dict[str, int] = field(default_factory=dict)
    stt_processing_ns: int | None = None
    tts_ttfb_ns: int | None = None
    smart_turn_ms: float | None = None


class TurnTimeline:
    """Collects one session's turn moments from the frames an observer is shown.

    Feed every first push to `observe`; it returns the turn's timeline (ms after the
    last voiced input frame, rounded to 0.1 ms; a step not seen is left out) when the
    bot starts speaking, else None. A turn begins at the VAD's speech start, so a
    pause and a barge-in start a fresh timeline.
    """

    def __init__(self) -> None:
        self._turn = _Turn()
        self._last_voiced_ns: int | None = None

    def observe(self, data: FramePushed) -> dict[str, float] | None:
        frame, source, at = data.frame, data.source, data.timestamp
        if isinstance(frame, InputAudioRawFrame):
            if isinstance(source, BaseInputTransport) and is_voiced(frame.audio):
                self._last_voiced_ns = at
            return None
        if isinstance(frame, VADUserStartedSpeakingFrame):
            self._turn = _Turn()
        elif isinstance(frame, VADUserStoppedSpeakingFrame):
            self._turn = _Turn(speech_end_ns=self._speech_end(at, frame))
            self._mark("vad_stop", at)
        elif isinstance(frame, MetricsFrame):
            self._metrics(data)
        elif isinstance(frame, TranscriptionFrame) and isinstance(source, STTService):
            self._mark("stt_done", at)
        elif isinstance(frame, UserStoppedSpeakingFrame):
            if data.direction == FrameDirection.DOWNSTREAM:
                self._mark("turn_end", at)
        elif isinstance(frame, LLMFullResponseStartFrame) and isinstance(source, LLMService):
            self._mark("llm_start", at)
        elif isinstance(frame, LLMTextFrame) and isinstance(source, LLMService):
            self._mark("llm_first_token", at)
        elif isinstance(frame, TTSAudioRawFrame) and isinstance(source, TTSService):
            self._mark("tts_first_audio", at)
        elif isinstance(frame, BotStartedSpeakingFrame):
            if data.direction == FrameDirection.DOWNSTREAM:
                return self._finish(at)
        return None

    def _speech_end(self, at: int, frame: VADUserStoppedSpeakingFrame) -> int:
        # Without a voiced frame (a very quiet talker) reckon as Pipecat does: the stop
        # window before the VAD's decision.
        if self._last_voiced_ns is not None and self._last_voiced_ns <= at:
            return self._last_voiced_ns
        return at - int(frame.stop_secs * 1e9)

    def _mark(self, moment: str, at: int) -> None:
        self._turn.at_ns.setdefault(moment, at)

    def _metrics(self, data: FramePushed) -> None:
        assert isinstance(data.frame, MetricsFrame)
        turn = self._turn
        for item in data.frame.data:
            if isinstance(item, TurnMetricsData):
                turn.smart_turn_ms = item.e2e_processing_time_ms
            elif not isinstance(item, ProcessingMetricsData | TTFBMetricsData) or item.value <= 0:
                continue
            elif isinstance(data.source, STTService) and isinstance(item, ProcessingMetricsData):
                turn.stt_processing_ns = turn.stt_processing_ns or int(item.value * 1e9)
            elif isinstance(data.source, TTSService) and isinstance(item, TTFBMetricsData):
                turn.tts_ttfb_ns = turn.tts_ttfb_ns or int(item.value * 1e9)

    def _finish(self, at: int) -> dict[str, float] | None:
        turn, self._turn = self._turn, _Turn()
        if turn.speech_end_ns is None:  # a greeting or a reply to text, not to speech
            return None
        turn.at_ns["bot_started"] = at
        stt_done = turn.at_ns.get("stt_done")
        if stt_done is not None and turn.stt_processing_ns is not None:
            turn.at_ns["stt_start"] = stt_done - turn.stt_processing_ns
        audio = turn.at_ns.get("tts_first_audio")
        if audio is not None and turn.tts_ttfb_ns is not None:
            turn.at_ns["first_clause"] = audio - turn.tts_ttfb_ns
        timeline = {
            moment: round((turn.at_ns[moment] - turn.speech_end_ns) / _NS_PER_MS, 1)
            for moment in MOMENTS
            if moment in turn.at_ns
        }
        if turn.smart_turn_ms is not None:
            timeline["smart_turn_ms"] = round(turn.smart_turn_ms, 1)
        return timeline


def gaps(timeline: dict[str, float]) -> dict[str, float]:
    """The time between consecutive moments of a timeline, named `<from>-><to>`."""
    seen = [(m, timeline[m]) for m in MOMENTS if m in timeline]
    steps = [("speech_end", 0.0), *seen]
    return {f"{a}->{b}": round(tb - ta, 1) for (a, ta), (b, tb) in itertools.pairwise(steps)}
