"""The server's turn timeline: each step's moment after the last voiced audio, per turn."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import numpy as np
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    Frame,
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
from pipecat.metrics.metrics import ProcessingMetricsData, TTFBMetricsData
from pipecat.observers.base_observer import FramePushed
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.stt_service import STTService
from pipecat.transports.base_input import BaseInputTransport
from pipecat.transports.base_transport import TransportParams

from tests.fakes import FakeLLMService, FakeTTSService, tone
from voicebot.observability.turn_timeline import TurnTimeline, gaps

MS = 1_000_000  # pipeline clock: nanoseconds


class _STT(STTService):
    async def run_stt(self, audio: bytes) -> AsyncGenerator[Frame, None]:
        yield TranscriptionFrame("", "", "")


class _Feed:
    def __init__(self) -> None:
        self.timeline = TurnTimeline()
        self.input = BaseInputTransport(TransportParams())
        self.stt = _STT()
        self.user = FrameProcessor()
        self.llm = FakeLLMService()
        self.tts = FakeTTSService()
        self.output = FrameProcessor()
        self.results: list[dict[str, float]] = []

    def push(
        self,
        at_ms: float,
        frame: Frame,
        source: FrameProcessor,
        direction: FrameDirection = FrameDirection.DOWNSTREAM,
    ) -> None:
        data = FramePushed(
            source=source,
            destination=self.output,
            frame=frame,
            direction=direction,
            timestamp=int(at_ms * MS),
        )
        result = self.timeline.observe(data)
        if result is not None:
            self.results.append(result)

    def audio(self, at_ms: float, *, voiced: bool) -> None:
        pcm = tone(0.02, 16000) if voiced else bytes(640)
        self.push(at_ms, InputAudioRawFrame(pcm, 16000, 1), self.input)


def _one_turn(feed: _Feed, start_ms: float = 0.0) -> None:
    t = start_ms
    feed.push(t, VADUserStartedSpeakingFrame(start_secs=0.2), feed.user, FrameDirection.UPSTREAM)
    for i in range(50):  # a second of speech, then silence
        feed.audio(t + 20 * i, voiced=True)
    for i in range(50, 70):
        feed.audio(t + 20 * i, voiced=False)
    end = t + 980  # the last voiced frame
    stop = VADUserStoppedSpeakingFrame(stop_secs=0.2)
    feed.push(end + 230, stop, feed.user, FrameDirection.UPSTREAM)
    feed.push(
        end + 830, MetricsFrame(data=[ProcessingMetricsData(processor="stt", value=0.55)]), feed.stt
    )
    feed.push(end + 840, TranscriptionFrame("Hello there.", "", ""), feed.stt)
    feed.push(end + 850, UserStoppedSpeakingFrame(), feed.user)
    feed.push(end + 850, UserStoppedSpeakingFrame(), feed.user, FrameDirection.UPSTREAM)
    feed.push(end + 870, LLMFullResponseStartFrame(), feed.llm)
    feed.push(end + 1050, LLMTextFrame("Hi"), feed.llm)
    feed.push(end + 1070, LLMTextFrame(" there"), feed.llm)
    feed.push(end + 1300, TTSAudioRawFrame(tone(0.05, 16000), 16000, 1), feed.tts)
    feed.push(
        end + 1301, MetricsFrame(data=[TTFBMetricsData(processor="tts", value=0.2)]), feed.tts
    )
    feed.push(end + 1320, BotStartedSpeakingFrame(), feed.output)
    feed.push(end + 1320, BotStartedSpeakingFrame(), feed.output, FrameDirection.UPSTREAM)


def test_a_turn_is_timed_from_the_last_voiced_audio_frame() -> None:
    feed = _Feed()
    _one_turn(feed)
    assert feed.results == [
        {
            "vad_stop": 230.0,
            "stt_start": 290.0,
            "stt_done": 840.0,
            "turn_end": 850.0,
            "llm_start": 870.0,
            "llm_first_token": 1050.0,
            "first_clause": 1100.0,
            "tts_first_audio": 1300.0,
            "bot_started": 1320.0,
        }
    ]
    # The gaps name where the time went, and add up to the whole turn.
    steps = gaps(feed.results[0])
    assert steps["speech_end->vad_stop"] == 230.0
    assert steps["vad_stop->stt_start"] == 60.0
    assert steps["stt_done->turn_end"] == 10.0
    assert steps["llm_first_token->first_clause"] == 50.0
    assert sum(steps.values()) == 1320.0


def test_each_turn_gets_its_own_timeline_and_a_reply_to_no_speech_none() -> None:
    feed = _Feed()
    # The greeting: the bot speaks before anyone did.
    feed.push(5, BotStartedSpeakingFrame(), feed.output)
    _one_turn(feed, start_ms=100)
    _one_turn(feed, start_ms=5000)
    assert len(feed.results) == 2
    assert feed.results[0] == feed.results[1]


def test_without_a_voiced_frame_the_turn_starts_a_stop_window_before_the_vad_stop() -> None:
    feed = _Feed()
    feed.push(0, VADUserStartedSpeakingFrame(start_secs=0.2), feed.user)
    quiet = (np.full(320, 50, np.int16)).tobytes()  # below the voiced threshold
    feed.push(10, InputAudioRawFrame(quiet, 16000, 1), feed.input)
    feed.push(1000, VADUserStoppedSpeakingFrame(stop_secs=0.2), feed.user)
    feed.push(1900, BotStartedSpeakingFrame(), feed.output)
    assert feed.results == [{"vad_stop": 200.0, "bot_started": 1100.0}]
