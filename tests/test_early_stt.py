"""Whisper starts on a pause before the VAD's stop confirms it (`stt.whisper.early_start_secs`).

Fast tests: Pipecat's real user aggregator with the VAD inside (our energy VAD on
Pipecat's state machine), our Whisper service on Pipecat's segmented STT, and a stand-in
engine that "transcribes" a segment to its length. The slow test runs the real Silero VAD
and the real Whisper engine on a spoken question and compares with a start at the stop.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from pipecat.audio.vad.vad_analyzer import VADAnalyzer, VADParams, VADState
from pipecat.frames.frames import Frame, InputAudioRawFrame, TranscriptionFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import (
    LLMContextAggregatorPair,
    LLMUserAggregatorParams,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.tests.utils import SleepFrame, run_test
from pipecat.turns.user_stop import SpeechTimeoutUserTurnStopStrategy
from pipecat.turns.user_turn_strategies import UserTurnStrategies

from tests.helpers import tweak_whisper, words
from tests.test_late_transcripts import CHUNK_S, RATE, _audio
from voicebot.audio.energy_vad import EnergyVADAnalyzer
from voicebot.audio.pcm import quiet_after_voice, voiced_samples
from voicebot.audio.silence_onset import DIP_S, TELL_S, SilenceOnset
from voicebot.audio.silero import SharedSileroVADAnalyzer
from voicebot.config import Settings
from voicebot.models import SharedModels
from voicebot.pipeline import _follow_pauses, _pause_heard, _vad_analyzer
from voicebot.providers.stt.whisper import FasterWhisperSTTService
from voicebot.providers.stt.whisper_engine import Transcript, WhisperEngine
from voicebot.tools import voice_set
from voicebot.tools.client import load_pcm16k
from voicebot.turns.segments import NoWordsFrame, spoken_since


def test_onset_is_told_after_the_silence_and_withdrawn_when_speech_returns() -> None:
    told: list[bool] = []
    onset = SilenceOnset(0.1, 0.2)
    onset.subscribe(told.append)

    def chunks(state: VADState, seconds: float) -> None:
        for _ in range(round(seconds / CHUNK_S)):
            onset.observe(state, CHUNK_S)

    chunks(VADState.SPEAKING, 1.0)
    chunks(VADState.STOPPING, 0.08)
    assert told == []  # a gap between words
    chunks(VADState.SPEAKING, 0.5)
    chunks(VADState.STOPPING, 0.12)
    assert told == [True]  # a pause began: start now
    chunks(VADState.SPEAKING, 0.3)
    assert told == [True, False]  # it was a pause mid-sentence
    chunks(VADState.STOPPING, 0.2)
    chunks(VADState.QUIET, 1.0)
    assert told == [True, False, True]  # the stop confirmed it: nothing more to tell

    never = SilenceOnset(0.0, 0.2)  # 0 = start at the stop, as Pipecat does
    never.subscribe(told.append)
    never.observe(VADState.STOPPING, 0.5)
    assert told == [True, False, True]


def _after_each_chunk(
    chunks: Sequence[VADState | tuple[VADState, bool | None]],
    read: Callable[[SilenceOnset], Any],
) -> list[Any]:
    """`read(onset)` after each 20 ms chunk: a state, or a state and whether it was voiced."""
    onset = SilenceOnset(0.0, 0.2)
    seen = []
    for chunk in chunks:
        state, voiced = chunk if isinstance(chunk, tuple) else (chunk, None)
        onset.observe(state, CHUNK_S, voiced=voiced)
        seen.append(read(onset))
    return seen


def test_a_voice_is_heard_from_its_first_window_not_from_the_vads_start() -> None:
    heard = _after_each_chunk(
        [VADState.SPEAKING, VADState.STOPPING, VADState.QUIET, VADState.STARTING, VADState.QUIET],
        lambda onset: onset.hearing_voice,
    )
    assert heard == [True, False, False, True, False]


def test_voiced_audio_after_a_pause_is_heard_while_the_vad_makes_up_its_mind() -> None:
    """Speech coming back after a 0.68 s pause: the real Silero VAD went QUIET, STARTING,
    QUIET, STARTING over 0.52 s of voiced audio before it confirmed it. A held turn must
    not end in the QUIET windows: voiced audio after a pause is a voice heard until it
    fades or the VAD takes it up. A click is heard on its own chunk only."""
    speaking, stopping = VADState.SPEAKING, VADState.STOPPING
    quiet, starting = VADState.QUIET, VADState.STARTING
    pause = [(stopping, False)] * 10 + [(quiet, False)] * 24
    back = [(quiet, True)] * 4 + [(starting, True)] * 4 + [(quiet, True)] * 2
    back += [(starting, True)] * 4 + [(speaking, True)]
    heard = _after_each_chunk([(speaking, True), *pause, *back], lambda o: o.hearing_voice)
    assert heard[1 + len(pause) :] == [True] * len(back)
    click = [(quiet, True), (quiet, False), (quiet, False)]
    heard = _after_each_chunk([(speaking, True), *pause, *click], lambda o: o.hearing_voice)
    assert heard[1 + len(pause) :] == [True, False, False]
    # Within `TELL_S` of the last word, voiced audio the VAD does not call speech is the
    # word's end, not a voice coming back.
    heard = _after_each_chunk(
        [(speaking, True), (stopping, False), (quiet, True)], lambda o: o.hearing_voice
    )
    assert heard == [True, False, False]


def test_the_silence_heard_is_the_audio_the_vad_judged_silent_since_speech() -> None:
    silences = _after_each_chunk(
        [
            VADState.SPEAKING,
            VADState.STOPPING,
            VADState.STOPPING,
            VADState.QUIET,
            VADState.STARTING,  # a voice not confirmed yet: neither counted nor a reset
            VADState.QUIET,
            VADState.SPEAKING,
        ],
        lambda onset: round(onset.silence_s / CHUNK_S),
    )
    assert silences == [0, 1, 2, 3, 3, 4, 0]


def test_watchers_are_told_after_each_chunk_is_counted() -> None:
    """A wait on the pause wakes on each chunk (turns/speculative.py): by then the chunk
    is counted, in the STOPPING windows that tell the early start too."""
    onset = SilenceOnset(0.02, 0.2)
    told: list[bool] = []
    onset.subscribe(told.append)
    seen: list[tuple[bool, int]] = []
    onset.watch(lambda: seen.append((onset.hearing_voice, round(onset.silence_s / CHUNK_S))))
    for state in [VADState.SPEAKING, VADState.STOPPING, VADState.STOPPING, VADState.QUIET]:
        onset.observe(state, CHUNK_S)
    assert seen == [(True, 0), (False, 1), (False, 2), (False, 3)]
    assert told == [True]


def _pauses_heard(chunks: Sequence[tuple[VADState, bool | None]]) -> list[int]:
    """`pause_s` in 20 ms chunks after each (state, voiced) chunk."""
    return _after_each_chunk(chunks, lambda onset: round(onset.pause_s / CHUNK_S))


def test_a_pause_after_loud_speech_is_counted_from_its_last_voiced_chunk() -> None:
    """The VAD still reports speech for a while after the last voiced sample; the pause is
    counted from that sample, not from the VAD's stop."""
    speaking, stopping = VADState.SPEAKING, VADState.STOPPING
    ending = [(speaking, True), (speaking, False), (speaking, False), (stopping, False)]
    assert _pauses_heard([*ending, (VADState.QUIET, False)]) == [0, 1, 2, 3, 4]


def test_a_soft_word_ending_the_vad_calls_silent_is_still_part_of_the_words() -> None:
    """Silero's confidence can fall while a soft word still sounds: the pause is counted
    from the word's last voiced chunk, not from where the VAD's silence began (counted
    from there, a short pause in mid-sentence ran past the floor)."""
    speaking, stopping = VADState.SPEAKING, VADState.STOPPING
    tail = [(stopping, True)] * (round(TELL_S / CHUNK_S) - 2)
    heard = _pauses_heard([(speaking, True), *tail, *[(stopping, False)] * 3])
    assert heard == [0] * (1 + len(tail)) + [1, 2, 3]


def test_speech_coming_back_before_the_vad_notices_does_not_lengthen_the_pause() -> None:
    """Silero notices speech that comes back a few windows late: the pause holds where it
    was at the first voiced chunk while the VAD's count would still run on."""
    speaking, stopping, quiet = VADState.SPEAKING, VADState.STOPPING, VADState.QUIET
    pause = [(stopping, False)] * 10 + [(quiet, False)] * 20
    back = [(quiet, True)] * 4 + [(VADState.STARTING, True)] * 5 + [(speaking, True)]
    heard = _pauses_heard([(speaking, True), *pause, *back])
    assert heard[len(pause)] == 30
    assert heard[len(pause) + 1 : -1] == [30] * (len(back) - 1) and heard[-1] == 0


def test_a_sound_in_the_pause_that_is_not_speech_leaves_it_going() -> None:
    """A click after `TELL_S` of quiet holds the count for `TELL_S`; the VAD does not take
    it up as speech, so the pause goes on from where it was, the click included."""
    speaking, stopping = VADState.SPEAKING, VADState.STOPPING
    tell = round(TELL_S / CHUNK_S)
    heard = _pauses_heard(
        [(speaking, True), *[(stopping, False)] * 12, (stopping, True), *[(stopping, False)] * 14]
    )
    assert heard[:13] == list(range(13))
    assert heard[13 : 13 + tell - 1] == [12] * (tell - 1)  # held while it could be speech
    assert heard[-1] == 27  # then counted on as if the click were quiet


def test_a_line_whose_noise_keeps_reaching_the_level_is_left_to_the_vad() -> None:
    """Where noise keeps the quiet count more than `TELL_S` behind the VAD's, the VAD's
    count is the pause: the turn is not held open, nor ended later than the VAD says."""
    speaking, stopping = VADState.SPEAKING, VADState.STOPPING
    tell = round(TELL_S / CHUNK_S)
    noisy = _pauses_heard([(speaking, True), *[(stopping, True)] * 40])
    assert noisy[: tell + 1] == [0] * (tell + 1)
    assert noisy[tell + 1 :] == list(range(tell + 1, 41))  # the VAD's count, in full


async def test_a_pause_counts_from_the_last_voiced_sample_of_a_joined_piece() -> None:
    """Caller audio arrives in 40 ms pieces: the quiet after the last voiced sample of
    a piece counts, and 0.9 s of steps reaches a 0.9 s floor on the step that makes it."""
    piece = np.zeros(640, np.int16)
    piece[:320] = 3000  # voiced for its first 20 ms
    assert quiet_after_voice(piece.tobytes()) == 320
    assert quiet_after_voice(np.zeros(640, np.int16).tobytes()) is None
    assert quiet_after_voice(np.full(640, -3000, np.int16).tobytes()) == 0

    vad = _energy_vad()
    vad.set_sample_rate(RATE)
    onset = vad.silence_onset = SilenceOnset(0.0, 0.2)
    for pcm in [np.full(640, 8000, np.int16)] * 10 + [piece]:
        await vad.analyze_audio(pcm.tobytes())
    assert onset.pause_s == pytest.approx(0.02)
    for _ in range(22):  # 0.02 + 22 x 0.04 = 0.9
        await vad.analyze_audio(bytes(1280))
    assert onset.pause_s >= 0.9
    # Ten 20 ms steps add up to 0.19999... in floats; the count is exact to the µs.
    stopping = [(VADState.STOPPING, False)] * 10
    assert _after_each_chunk([(VADState.SPEAKING, True), *stopping], lambda o: o.pause_s)[-1] >= 0.2


def test_a_dip_in_the_vads_confidence_after_the_last_word_is_not_speech_coming_back() -> None:
    """Real Silero on a held-out file ("Have long shot that oil faster."): STOPPING on the
    word's last voiced piece, SPEAKING on the quiet piece after it, then the pause. Speech
    again after less than `DIP_S` of VAD silence is the same stretch: the pause is still
    the quiet since the last voiced sample (counted as the VAD's, it reached a 0.9 s
    floor 60 ms later)."""
    speaking, stopping = VADState.SPEAKING, VADState.STOPPING
    dip = [(stopping, True), (speaking, False), (speaking, False)]
    heard = _pauses_heard([(speaking, True), *dip, *[(stopping, False)] * 3])
    assert heard == [0, 0, 1, 2, 3, 4, 5]


def test_speech_too_quiet_for_the_level_leaves_the_pause_to_the_vad() -> None:
    speaking, stopping = VADState.SPEAKING, VADState.STOPPING
    # A quiet microphone: no chunk of the speech is voiced.
    assert _pauses_heard([(speaking, False), (speaking, False), (stopping, False)]) == [0, 0, 1]
    # Loud speech, a pause, then speech too soft for the level: the pause after it is
    # the VAD's to count, not the quiet since the loud words before the first pause.
    pause = [(stopping, False)] * round(DIP_S / CHUNK_S)
    soft = [(speaking, False), (speaking, False), (stopping, False)]
    heard = _pauses_heard([(speaking, True), *pause, *soft])
    assert heard == [0, *range(1, len(pause) + 1), 0, 0, 1]
    # An analyzer that does not tell the level: the VAD's count alone.
    assert _pauses_heard([(speaking, None), (speaking, None), (stopping, None)]) == [0, 0, 1]


def test_the_turns_floor_counts_from_the_last_voiced_chunk_unless_set_not_to() -> None:
    pauses = SilenceOnset(0.0, 0.2)
    for state, voiced in [(VADState.SPEAKING, True)] + [(VADState.SPEAKING, False)] * 3:
        pauses.observe(state, CHUNK_S, voiced=voiced)
    from_voiced = _pause_heard(Settings(), pauses)
    from_vad = _pause_heard(
        Settings.model_validate({"turn": {"min_silence_from_last_voiced": False}}), pauses
    )
    assert from_voiced is not None and from_vad is not None
    assert from_voiced() == pytest.approx(3 * CHUNK_S) and from_vad() == 0.0
    assert _pause_heard(Settings(), None) is None


class LengthEngine:
    """Stands in for `WhisperEngine`: a segment's "transcript" is how many seconds of it
    are voiced (its samples away from zero), so a transcript shows what audio it heard."""

    def __init__(self, decode_s: float = 0.05) -> None:
        self.model = SimpleNamespace()
        self.description = {"model": "tiny.en"}
        self.options = SimpleNamespace(no_speech_prob=0.4)
        self.decode_s = decode_s
        self.submitted_s: list[float] = []
        self._thread = ThreadPoolExecutor(1)

    def submit(self, samples: np.ndarray) -> Future[Transcript]:
        self.submitted_s.append(len(samples) / RATE)
        return self._thread.submit(self._decode, samples)

    def _decode(self, samples: np.ndarray) -> Transcript:
        time.sleep(self.decode_s)
        voiced_s = float(np.count_nonzero(np.abs(samples) > 0.01)) / RATE
        text = f"{voiced_s:.2f}"
        return Transcript(text, "en", len(samples) / RATE, 1.0, 0.1, 1, "tiny.en", "cpu", "int8")


class Transcripts(FrameProcessor):
    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []
        self.spoken_since: list[bool] = []
        self.no_words: list[bool] = []  # spoken_since of each segment that gave no words

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, TranscriptionFrame):
            self.texts.append(frame.text)
            self.spoken_since.append(spoken_since(frame))
        elif isinstance(frame, NoWordsFrame):
            self.no_words.append(spoken_since(frame))
        await self.push_frame(frame, direction)


async def transcribe(
    stt: FasterWhisperSTTService,
    vad: VADAnalyzer,
    frames: list[Frame],
    *,
    early_start_secs: float,
    heard: Transcripts | None = None,
) -> list[str]:
    """Send `frames` through STT -> user aggregator (with `vad`), wired as a session is."""
    settings = tweak_whisper(Settings(), early_start_secs=early_start_secs)
    _follow_pauses(settings, vad, stt)
    pair = LLMContextAggregatorPair(
        LLMContext(),
        user_params=LLMUserAggregatorParams(
            vad_analyzer=vad,
            empty_user_turn=None,
            user_turn_strategies=UserTurnStrategies(stop=[SpeechTimeoutUserTurnStopStrategy()]),
        ),
    )
    heard = heard or Transcripts()
    await run_test(
        Pipeline([stt, heard, pair.user()]),
        frames_to_send=[*frames, SleepFrame(0.5)],
        pipeline_params=PipelineParams(audio_in_sample_rate=RATE),
    )
    return heard.texts


def _energy_vad() -> EnergyVADAnalyzer:
    return EnergyVADAnalyzer(params=VADParams(stop_secs=0.2, min_volume=0.0))


def _speech(*pieces: tuple[bool, float]) -> list[Frame]:
    return [f for voiced, seconds in pieces for f in _audio(seconds, voiced=voiced)]


async def test_a_pause_is_transcribed_from_its_onset_and_used_at_the_stop() -> None:
    engine = LengthEngine()
    stt = FasterWhisperSTTService(engine=engine)  # type: ignore[arg-type]
    texts = await transcribe(
        stt, _energy_vad(), _speech((True, 1.2), (False, 1.0)), early_start_secs=0.1
    )
    assert (stt.early.started, stt.early.used, stt.early.dropped) == (1, 1, 0)
    # One decode only, started before the stop: the stop's segment was not sent again.
    # It was as long as the stop's (next test): speech, the pause's 0.2 s as silence and
    # Pipecat's 0.5 s of padding.
    assert engine.submitted_s == [pytest.approx(1.2 + 0.2 + 0.5, abs=0.05)]
    assert len(texts) == 1 and float(texts[0]) == pytest.approx(1.2, abs=0.05)


async def test_speech_after_the_onset_drops_the_early_start() -> None:
    engine = LengthEngine()
    stt = FasterWhisperSTTService(engine=engine)  # type: ignore[arg-type]
    # 0.14 s of silence: long enough to start early, too short for the VAD's stop.
    texts = await transcribe(
        stt,
        _energy_vad(),
        _speech((True, 1.0), (False, 0.14), (True, 0.5), (False, 1.0)),
        early_start_secs=0.1,
    )
    assert (stt.early.started, stt.early.used, stt.early.dropped) == (2, 1, 1)
    # The transcript covers the whole utterance, not the part before the first pause.
    assert len(texts) == 1 and float(texts[0]) == pytest.approx(1.5, abs=0.05)


async def test_a_transcript_ready_after_the_person_spoke_again_says_so() -> None:
    """A slow Whisper (2 s a segment): the words before a 0.7 s pause are ready after the
    VAD heard the second half begin (turns/segments.py); the second half's are not. The
    decode is wall-clock time and the audio is paced by the test, so 2 s leaves room for
    a busy machine to pace the pause nearly three times slower than real time."""
    stt = FasterWhisperSTTService(engine=LengthEngine(decode_s=2.0))  # type: ignore[arg-type]
    heard = Transcripts()
    texts = await transcribe(
        stt,
        _energy_vad(),
        _speech((True, 1.0), (False, 0.7), (True, 0.8), (False, 4.5)),
        early_start_secs=0.0,
        heard=heard,
    )
    assert [float(t) for t in texts] == [pytest.approx(1.0, abs=0.05), pytest.approx(0.8, abs=0.05)]
    assert heard.spoken_since == [True, False]


class NoWordsEngine(LengthEngine):
    """Hears no words in anything (a cough, a word Whisper dropped)."""

    def _decode(self, samples: np.ndarray) -> Transcript:
        return replace(super()._decode(samples), text="")


async def test_a_segment_without_words_says_so() -> None:
    """The turn strategies then stop waiting for its words (turns/segments.py)."""
    heard = Transcripts()
    stt = FasterWhisperSTTService(engine=NoWordsEngine())  # type: ignore[arg-type]
    texts = await transcribe(
        stt, _energy_vad(), _speech((True, 0.6), (False, 1.0)), early_start_secs=0.1, heard=heard
    )
    assert texts == [] and heard.no_words == [False]


class UnclearEngine(LengthEngine):
    """Hears speech whose words it cannot make out (every segment dropped for them)."""

    def _decode(self, samples: np.ndarray) -> Transcript:
        return replace(super()._decode(samples), text="", unclear=True)


@pytest.mark.parametrize(("engine", "unclear"), [(UnclearEngine, True), (NoWordsEngine, False)])
async def test_unclear_speech_is_told_before_its_segment_says_it_has_no_words(
    engine: type[LengthEngine], unclear: bool
) -> None:
    """So the turn that ends without words knows to ask to repeat (processors/ask_to_repeat.py)."""
    heard = Transcripts()
    stt = FasterWhisperSTTService(engine=engine())  # type: ignore[arg-type]
    told: list[int] = []

    @stt.event_handler("on_unclear_speech")
    async def on_unclear(_stt: FasterWhisperSTTService) -> None:
        told.append(len(heard.no_words))  # the NoWordsFrame has not gone on yet

    await transcribe(
        stt, _energy_vad(), _speech((True, 0.6), (False, 1.0)), early_start_secs=0.1, heard=heard
    )
    assert heard.no_words == [False]
    assert told == ([0] if unclear else [])


async def test_zero_starts_at_the_stop() -> None:
    engine = LengthEngine()
    stt = FasterWhisperSTTService(engine=engine)  # type: ignore[arg-type]
    texts = await transcribe(
        stt, _energy_vad(), _speech((True, 1.2), (False, 1.0)), early_start_secs=0.0
    )
    assert stt.early.started == 0
    assert len(texts) == 1 and float(texts[0]) == pytest.approx(1.2, abs=0.05)
    assert engine.submitted_s == [pytest.approx(1.2 + 0.2 + 0.5, abs=0.05)]


def test_only_an_onset_before_the_stop_is_wired() -> None:
    for early_s, wired in [(0.1, True), (0.0, False), (0.2, False), (0.5, False)]:
        stt = FasterWhisperSTTService(engine=LengthEngine())  # type: ignore[arg-type]
        vad = _energy_vad()
        heard: list[bool] = []
        stt.on_silence = heard.append  # type: ignore[method-assign,assignment]
        settings = tweak_whisper(Settings(), early_start_secs=early_s)
        pauses = _follow_pauses(settings, vad, stt)
        # The VAD's states are followed in any case (turn ends held for a voice use them).
        assert pauses is not None and vad.silence_onset is pauses
        for _ in range(10):  # 0.2 s of silence after speech, in 20 ms chunks
            pauses.observe(VADState.STOPPING, 0.02)
        assert (heard == [True]) == wired, early_s


@pytest.mark.slow
async def test_real_whisper_hears_the_same_words_from_the_onset(
    models: SharedModels, question_pcm: dict[str, np.ndarray]
) -> None:
    engine: WhisperEngine = models.stt
    assert models.silero_session is not None
    for name, pcm in question_pcm.items():
        chunk = int(RATE * CHUNK_S)
        padded = np.concatenate([pcm, np.zeros(RATE, dtype=np.int16)])
        frames: list[Frame] = []
        for i in range(0, len(padded) - chunk + 1, chunk):
            audio = padded[i : i + chunk].tobytes()
            frames += [InputAudioRawFrame(audio, RATE, 1), SleepFrame(CHUNK_S)]

        heard = {}
        for early_s in (0.1, 0.0):
            stt = FasterWhisperSTTService(engine=engine)
            vad = SharedSileroVADAnalyzer(
                session=models.silero_session, params=VADParams(stop_secs=0.2)
            )
            heard[early_s] = " ".join(await transcribe(stt, vad, frames, early_start_secs=early_s))
            if early_s:
                assert stt.early.used >= 1, name
        assert heard[0.1] and words(heard[0.1]) == words(heard[0.0]), name


async def _replay_pauses(
    settings: Settings, models: SharedModels, pcm: np.ndarray
) -> list[tuple[int, float, float]]:
    """(end sample, pause_s, the VAD's silence_s) after each 40 ms piece of `pcm` (the
    pieces caller audio enters the pipeline in), through the session's real Silero VAD."""
    vad = _vad_analyzer(settings, models)
    assert isinstance(vad, SharedSileroVADAnalyzer)
    vad.set_sample_rate(RATE)
    onset = vad.silence_onset = SilenceOnset(0.0, settings.vad.stop_secs)
    seen, piece = [], 2 * int(RATE * CHUNK_S)
    for start in range(0, len(pcm) - piece + 1, piece):
        await vad.analyze_audio(pcm[start : start + piece].tobytes())
        seen.append((start + piece, onset.pause_s, onset.silence_s))
    return seen


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
async def test_real_silero_a_pause_is_its_quiet_and_a_noisy_line_the_vads_count(
    settings: Settings, models: SharedModels, tmp_path: Path
) -> None:
    """A 0.7 s pause in mid-sentence, spoken by espeak-ng and heard by the real Silero
    VAD: the VAD's count of it runs longer than its quiet (the reason the floor counts
    the quiet), and the floor's count stays within a piece of the quiet. The same
    sentence on a noisy line (white noise whose peaks pass the voiced level) still
    reaches a 0.9 s floor, no later than the VAD's own count does."""
    voice_set.speak("I'd like to book a table for | four people.", "en-us", 165, tmp_path / "p.wav")
    speech = load_pcm16k(tmp_path / "p.wav")
    voiced = voiced_samples(speech)
    gap = int(np.argmax(np.diff(voiced)))
    quiet_s = (voiced[gap + 1] - voiced[gap] - 1) / RATE
    assert 0.6 < quiet_s < 0.8
    pcm = np.concatenate([speech, np.zeros(2 * RATE, np.int16)])

    seen = await _replay_pauses(settings, models, pcm)
    # The pause, and the time Silero takes to notice the speech coming back.
    noticed = voiced[gap + 1] + int(0.3 * RATE)
    inner = [(p, s) for end, p, s in seen if voiced[gap] < end <= noticed]
    assert max(p for p, _ in inner) <= quiet_s + 2 * CHUNK_S
    assert max(s for _, s in inner) > max(p for p, _ in inner)

    noise = np.random.default_rng(7).normal(0, 32767 * 10 ** (-45 / 20), len(pcm))
    noisy = np.clip(pcm + noise, -32768, 32767).astype(np.int16)
    seen = await _replay_pauses(settings, models, noisy)
    after = [(end, p, s) for end, p, s in seen if end > voiced[-1]]
    floor_at = next(end for end, p, _ in after if p >= 0.9)
    vad_at = next(end for end, _, s in after if s >= 0.9)
    assert floor_at <= vad_at
