"""A transcript that arrives after its user turn has ended still gets a reply.

Under heavy load (2 cores at load 20-30) Whisper's transcript came 5-11 s after the speech:
after the VAD's stop, after smart-turn's silence limit, and after the user turn's stop
watchdog (Pipecat's `user_turn_stop_timeout`, 5 s), which ends a turn that has no words.
Small fakes, real logic: the session's own turn strategies
(`pipeline.user_turn_strategies`, with the real smart-turn analyzer over an ONNX session
stand-in whose verdict the test gives), Pipecat's real user and assistant aggregators with
the VAD inside, and a segmented STT on Pipecat's base whose transcript is late on purpose.
Audio is paced in real time, so each test takes as long as its late transcript (seconds).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from pipecat.audio.vad.vad_analyzer import VADParams
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    Frame,
    InputAudioRawFrame,
    SystemFrame,
    TranscriptionFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import (
    LLMContextAggregatorPair,
    LLMUserAggregatorParams,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.stt_service import SegmentedSTTService
from pipecat.tests.utils import SleepFrame, run_test
from pipecat.turns.empty_user_turn import (
    DEFAULT_EMPTY_USER_TURN_INTERRUPTED_PROMPT,
    EmptyUserTurnConfig,
)
from pipecat.utils.time import time_now_iso8601

from tests.fakes import FakeLLMService, FakeTTSService
from tests.helpers import tweak
from voicebot.audio.energy_vad import EnergyVADAnalyzer
from voicebot.config import Settings
from voicebot.pipeline import say_repeat_phrase, user_turn_strategies
from voicebot.processors.ask_to_repeat import UNCLEAR_SPEECH_PROMPT, RepeatRequests
from voicebot.turns.segments import NoWordsFrame

# The transcripts are really late and the audio is paced in real time: seconds a test.
pytestmark = pytest.mark.slow

RATE = 16000
CHUNK_S = 0.02


# A segment the STT heard as speech but whose words it could not make out.
UNCLEAR = None


class LateSTT(SegmentedSTTService):
    """Pipecat's segmented STT (audio buffered between the VAD's start and stop); each
    segment's transcript comes `delays_s[i]` seconds after its segment ended. An UNCLEAR
    text is reported as our Whisper service reports it: `on_unclear_speech`, no words."""

    REPORTS_UNCLEAR_SPEECH = True

    def __init__(
        self, texts: Sequence[str | None], delays_s: Sequence[float], **kwargs: Any
    ) -> None:
        # What FasterWhisperSTTService declares.
        super().__init__(ttfs_p99_latency=0.6, **kwargs)
        self._register_event_handler("on_unclear_speech", sync=True)
        self._texts = list(texts)
        self._delays_s = list(delays_s)

    @property
    def wants_wav_segments(self) -> bool:
        return False

    async def run_stt(self, audio: bytes) -> AsyncGenerator[Frame, None]:
        text, delay_s = self._texts.pop(0), self._delays_s.pop(0)
        await asyncio.sleep(delay_s)
        if text is UNCLEAR:
            await self._call_event_handler("on_unclear_speech")
            yield NoWordsFrame(unclear=True)
            return
        yield TranscriptionFrame(text, "user", time_now_iso8601())


class SmartTurnVerdict:
    """Stands in for smart-turn's ONNX session: the probability that the turn is complete."""

    def __init__(self, probability: float) -> None:
        self._probability = probability

    def run(self, _outputs: Any, _feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return [np.array([[self._probability]], dtype=np.float32)]


@dataclass
class Probe(SystemFrame):
    """Where the test reads the conversation, before the end of the session writes an open
    turn to the context."""


@dataclass
class Conversation:
    llm_calls: int = 0
    messages: list[tuple[Any, Any]] | None = None


class Reader(FrameProcessor):
    def __init__(self, llm: FakeLLMService, context: LLMContext) -> None:
        super().__init__()
        self.seen = Conversation()
        self._llm = llm
        self._context = context

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, Probe):
            self.seen.llm_calls = self._llm.calls
            self.seen.messages = [
                (m.get("role"), m.get("content"))
                for m in self._context.messages
                if isinstance(m, dict)
            ]
        await self.push_frame(frame, direction)


def _audio(seconds: float, *, voiced: bool) -> list[Frame]:
    """`seconds` of microphone audio in 20 ms chunks, paced in real time."""
    n = int(RATE * CHUNK_S)
    wave = np.sin(np.arange(n) / 3) * 12000 if voiced else np.zeros(n)
    pcm = wave.astype(np.int16).tobytes()
    frames: list[Frame] = []
    for _ in range(round(seconds / CHUNK_S)):
        frames.append(InputAudioRawFrame(audio=pcm, sample_rate=RATE, num_channels=1))
        frames.append(SleepFrame(CHUNK_S))
    return frames


async def converse(
    speech: Sequence[tuple[bool, float] | Frame],
    texts: Sequence[str | None],
    delays_s: Sequence[float],
    *,
    smart_turn_complete: bool = True,
    speculative: bool = False,
    ask_to_repeat: bool = False,
    repeat_phrase: bool = False,
) -> Conversation:
    """Speak (voiced, seconds) pieces (and send frames in between) through the session's
    turn set-up; the STT answers each voiced piece with texts[i] after delays_s[i].
    `ask_to_repeat`: the session's handling of turns without words (pipeline.py), with
    `turn.repeat_phrase` spoken instead of running the LLM when `repeat_phrase`. Returns
    the conversation as the LLM saw it when the audio ended."""
    llm = FakeLLMService(reply="Sure.")
    context = LLMContext()
    settings = tweak(Settings(), turn={"speculative": speculative})
    models = SimpleNamespace(
        smart_turn_session=SmartTurnVerdict(0.9 if smart_turn_complete else 0.1)
    )
    empty_turns = EmptyUserTurnConfig(interrupted_prompt=None) if ask_to_repeat else None
    pair = LLMContextAggregatorPair(
        context,
        user_params=LLMUserAggregatorParams(
            vad_analyzer=EnergyVADAnalyzer(
                params=VADParams(stop_secs=settings.vad.stop_secs, min_volume=0.0)
            ),
            empty_user_turn=empty_turns,
            user_turn_strategies=user_turn_strategies(settings, models),  # type: ignore[arg-type]
        ),
    )
    stt = LateSTT(texts, delays_s)
    if empty_turns is not None:
        RepeatRequests(empty_turns).attach(pair.user(), pair.assistant(), stt)
    reader = Reader(llm, context)
    repeat = say_repeat_phrase(settings) if repeat_phrase else []
    pipeline = Pipeline(
        [
            stt,
            pair.user(),
            reader,
            *repeat,
            llm,
            FakeTTSService(),
            pair.assistant(),
        ]
    )
    frames = [
        f
        for piece in speech
        for f in ([piece] if isinstance(piece, Frame) else _audio(piece[1], voiced=piece[0]))
    ]
    await run_test(
        pipeline,
        frames_to_send=[*frames, Probe()],
        pipeline_params=PipelineParams(audio_in_sample_rate=RATE),
    )
    return reader.seen


QUESTION = "What is the capital of France?"


async def test_a_transcript_after_the_stop_watchdog_is_answered() -> None:
    # 1.2 s of speech; the transcript comes 6.5 s after the VAD's stop, when the watchdog
    # has already ended the turn with no words.
    seen = await converse([(True, 1.2), (False, 9.0)], [QUESTION], [6.5])
    assert seen.llm_calls == 1
    assert seen.messages == [("user", QUESTION), ("assistant", "Sure.")]


async def test_unfinished_words_after_the_stop_watchdog_are_answered() -> None:
    # Neither the transcript nor smart-turn says the person finished: smart-turn's
    # transcript-only rule ends the new turn.
    seen = await converse(
        [(True, 1.2), (False, 9.0)],
        ["I'd like to book a table for"],
        [6.5],
        smart_turn_complete=False,
    )
    assert seen.llm_calls == 1
    assert seen.messages == [("user", "I'd like to book a table for"), ("assistant", "Sure.")]


async def test_a_transcript_after_the_silence_limit_is_answered() -> None:
    # smart-turn judged the pause unfinished and its 2 s silence limit ran out before the
    # words came (3 s after the stop), inside the watchdog's 5 s.
    seen = await converse(
        [(True, 1.2), (False, 5.0)],
        ["I'd like to book a table for"],
        [3.0],
        smart_turn_complete=False,
    )
    assert seen.llm_calls == 1
    assert seen.messages == [("user", "I'd like to book a table for"), ("assistant", "Sure.")]


async def test_with_speculative_replies_a_late_transcript_is_answered_once() -> None:
    seen = await converse([(True, 1.2), (False, 9.0)], [QUESTION], [6.5], speculative=True)
    assert seen.llm_calls == 1
    assert seen.messages == [("user", QUESTION), ("assistant", "Sure.")]


# A turn without words: it ends when the stop watchdog (5 s) runs out.
WORDLESS = [(True, 0.5), (False, 6.0)]


async def test_words_lost_after_cutting_a_reply_off_make_the_bot_ask_to_repeat() -> None:
    """ "Tell me something funny, | please!": the turn ended at the pause, "please" cut the
    reply off and Whisper heard no words in it. The question is not dropped."""
    seen = await converse(
        [(True, 1.2), (False, 1.0), *WORDLESS], [QUESTION, ""], [0.1, 0.1], ask_to_repeat=True
    )
    assert seen.llm_calls == 2
    assert seen.messages == [
        ("user", QUESTION),
        ("assistant", "Sure."),
        ("developer", DEFAULT_EMPTY_USER_TURN_INTERRUPTED_PROMPT),
        ("assistant", "Sure."),
    ]


async def test_the_request_to_repeat_is_a_fixed_phrase_not_an_llm_run() -> None:
    """The same turns with `turn.repeat_phrase`: the instruction never reaches the LLM
    (the bundled one read it out), the phrase is spoken and kept as the bot's reply."""
    phrase = Settings().turn.repeat_phrase
    assert phrase, "turn.repeat_phrase is on by default"
    seen = await converse(
        [(True, 1.2), (False, 1.0), *WORDLESS],
        [QUESTION, ""],
        [0.1, 0.1],
        ask_to_repeat=True,
        repeat_phrase=True,
    )
    assert seen.llm_calls == 1
    assert seen.messages == [("user", QUESTION), ("assistant", "Sure."), ("assistant", phrase)]


async def test_a_turn_without_words_before_the_first_reply_gets_no_answer() -> None:
    seen = await converse(WORDLESS, [""], [0.1], ask_to_repeat=True)
    assert seen.llm_calls == 0 and seen.messages == []


async def test_a_turn_without_words_while_the_bot_waits_gets_no_answer() -> None:
    seen = await converse(
        [
            (True, 1.2),
            (False, 1.0),
            BotStartedSpeakingFrame(),
            BotStoppedSpeakingFrame(),  # the reply was heard to its end
            *WORDLESS,
        ],
        [QUESTION, ""],
        [0.1, 0.1],
        ask_to_repeat=True,
    )
    assert seen.llm_calls == 1
    assert seen.messages == [("user", QUESTION), ("assistant", "Sure.")]


async def test_unclear_speech_before_the_first_reply_gets_a_request_to_repeat() -> None:
    """ "Please set an alarm for seven in the morning" in a slow British espeak voice: every
    segment Whisper decoded was dropped for the low probability of its words. The person
    spoke; silence would leave them waiting."""
    phrase = Settings().turn.repeat_phrase
    # 2 s of silence, not the stop watchdog's 5 s: the turn ends once Whisper has said so.
    for speculative in (False, True):
        seen = await converse(
            [(True, 0.5), (False, 2.0)],
            [UNCLEAR],
            [0.1],
            ask_to_repeat=True,
            repeat_phrase=True,
            speculative=speculative,
        )
        assert seen.llm_calls == 0
        assert seen.messages == [("assistant", phrase)]


async def test_unclear_speech_while_the_bot_waits_gets_a_request_to_repeat() -> None:
    seen = await converse(
        [
            (True, 1.2),
            (False, 1.0),
            BotStartedSpeakingFrame(),
            BotStoppedSpeakingFrame(),  # the reply was heard to its end
            *WORDLESS,
        ],
        [QUESTION, UNCLEAR],
        [0.1, 0.1],
        ask_to_repeat=True,
    )
    assert seen.llm_calls == 2  # worded by the LLM without `turn.repeat_phrase`
    assert seen.messages == [
        ("user", QUESTION),
        ("assistant", "Sure."),
        ("developer", UNCLEAR_SPEECH_PROMPT),
        ("assistant", "Sure."),
    ]


async def test_a_request_to_repeat_holds_only_for_the_turn_with_unclear_speech() -> None:
    """Unclear speech, the bot asks to repeat; the person asks a question, the bot answers;
    then a cough while the bot waits (no unclear speech in it) gets no answer."""
    phrase = Settings().turn.repeat_phrase
    heard = [BotStartedSpeakingFrame(), BotStoppedSpeakingFrame()]
    seen = await converse(
        [*WORDLESS, *heard, (True, 1.2), (False, 1.0), *heard, *WORDLESS],
        [UNCLEAR, QUESTION, ""],
        [0.1, 0.1, 0.1],
        ask_to_repeat=True,
        repeat_phrase=True,
    )
    assert seen.llm_calls == 1
    assert seen.messages == [("assistant", phrase), ("user", QUESTION), ("assistant", "Sure.")]
