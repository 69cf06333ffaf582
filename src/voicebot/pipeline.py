"""Assembles one session's pipeline from the settings and the shared models; no I/O of its own."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pipecat.audio.turn.smart_turn.base_smart_turn import SmartTurnParams
from pipecat.audio.vad.vad_analyzer import VADAnalyzer, VADParams
from pipecat.observers.base_observer import BaseObserver
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import (
    LLMContextAggregatorPair,
    LLMUserAggregatorParams,
)
from pipecat.processors.frame_processor import FrameProcessor
from pipecat.transports.base_input import BaseInputTransport
from pipecat.transports.base_transport import BaseTransport
from pipecat.turns.empty_user_turn import EmptyUserTurnConfig
from pipecat.turns.user_stop import (
    BaseUserTurnStopStrategy,
    SpeechTimeoutUserTurnStopStrategy,
    TurnAnalyzerUserTurnStopStrategy,
)
from pipecat.turns.user_turn_strategies import UserTurnStrategies

from voicebot.audio.barge_in import BargeInVADParams, barge_in_params
from voicebot.audio.energy_vad import EnergyVADAnalyzer
from voicebot.audio.silence_onset import SilenceOnset, StartsOnPauses
from voicebot.audio.silero import SharedSileroVADAnalyzer
from voicebot.audio.smart_turn import SharedSmartTurnAnalyzer
from voicebot.config import Settings
from voicebot.models import SharedModels
from voicebot.observability.observer_group import ObserverGroup
from voicebot.observability.rtvi import VoicebotRTVIProcessor
from voicebot.processors.ask_to_repeat import AskToRepeat, RepeatRequests
from voicebot.processors.barge_in import BargeInVADSwitch
from voicebot.processors.filler import LateReplyFiller
from voicebot.processors.history import HistoryLimiter
from voicebot.processors.input_audio import InputAudioStop
from voicebot.protocol import INPUT_SAMPLE_RATE
from voicebot.providers import spec as providers
from voicebot.providers.llm.local import LocalLLMService
from voicebot.providers.llm.stage import build_llm
from voicebot.providers.tts.ahead import FirstPieceAhead, SynthesisesAhead
from voicebot.providers.tts.stage import build_tts, output_sample_rate
from voicebot.transports.caller_audio import join_caller_audio
from voicebot.turns.complete_transcript import CompleteTranscriptUserTurnStopStrategy
from voicebot.turns.sentence_end import SentenceEnds
from voicebot.turns.speculative import SpeculativeUserTurnStopStrategy


def vad_params(settings: Settings) -> tuple[VADParams, BargeInVADParams | None]:
    """The VAD's params, and those it listens with while the bot speaks (None: the same)."""
    normal = VADParams(
        confidence=settings.vad.confidence,
        start_secs=settings.vad.start_secs,
        stop_secs=settings.vad.stop_secs,
        min_volume=settings.vad.min_volume,
    )
    barge_in = settings.vad.barge_in
    if not barge_in.enabled:
        return normal, None
    return normal, barge_in_params(
        normal,
        start_secs=barge_in.start_secs,
        start_confidence=barge_in.start_confidence,
        min_level_dbfs=barge_in.min_level_dbfs,
    )


def _barge_in_switch(settings: Settings) -> list[BargeInVADSwitch]:
    normal, barge_in = vad_params(settings)
    return [] if barge_in is None else [BargeInVADSwitch(normal=normal, barge_in=barge_in)]


def _vad_analyzer(settings: Settings, models: SharedModels) -> VADAnalyzer:
    params, _ = vad_params(settings)
    if settings.vad.provider == "energy":
        return EnergyVADAnalyzer(params=params)
    assert models.silero_session is not None, "SharedModels.load(settings) loads Silero"
    return SharedSileroVADAnalyzer(session=models.silero_session, params=params)


def _follow_pauses(settings: Settings, vad: VADAnalyzer, stt: object) -> SilenceOnset | None:
    """Follow the VAD's states (audio/silence_onset.py): the STT starts on a pause
    `stt.whisper.early_start_secs` into it, when that comes before the VAD's stop, and a
    turn end held for `turn.min_silence_secs` hears a voice before the VAD confirms it."""
    if not isinstance(vad, SharedSileroVADAnalyzer | EnergyVADAnalyzer):
        return None
    early_s = settings.stt.whisper.early_start_secs
    starts_early = 0 < early_s < settings.vad.stop_secs and isinstance(stt, StartsOnPauses)
    vad.silence_onset = SilenceOnset(early_s if starts_early else 0.0, settings.vad.stop_secs)
    if isinstance(stt, StartsOnPauses) and starts_early:
        stt.start_on_pauses(vad.silence_onset)
    return vad.silence_onset


def _pause_heard(settings: Settings, pauses: SilenceOnset | None) -> Callable[[], float] | None:
    """How long the pause has lasted, in audio, for the turn's floor."""
    if pauses is None:
        return None
    if settings.turn.min_silence_from_last_voiced:
        return lambda: pauses.pause_s
    return lambda: pauses.silence_s


def _smart_turn_only_when_needed(settings: Settings) -> bool:
    """Whether smart-turn's verdict on a pause whose words read complete is moot: that
    pause ends the turn at the floor either way (audio/smart_turn.py)."""
    turn = settings.turn
    return (
        turn.smart_turn_when_needed
        and turn.end_on_complete_transcript
        and turn.speculative
        and turn.complete_transcript_alone_after_secs <= turn.min_silence_secs
    )


def _turn_stop_strategies(
    settings: Settings,
    models: SharedModels,
    pauses: SilenceOnset | None,
    sentence_ends: SentenceEnds | None = None,
) -> list[BaseUserTurnStopStrategy]:
    # Whichever strategy decides first ends the turn: a transcript that reads complete
    # (at once when smart-turn agrees, else after a short wait); otherwise smart-turn's
    # intonation judgement or the silence limit.
    pause: BaseUserTurnStopStrategy
    analyzer: SharedSmartTurnAnalyzer | None = None
    if settings.turn.smart_turn and models.smart_turn_session is not None:
        analyzer = SharedSmartTurnAnalyzer(
            session=models.smart_turn_session,
            params=SmartTurnParams(stop_secs=settings.turn.max_silence_secs),
            nice=settings.turn.smart_turn_nice,
            judge_on_words=_smart_turn_only_when_needed(settings),
        )
        pause = TurnAnalyzerUserTurnStopStrategy(turn_analyzer=analyzer)
    else:
        pause = SpeechTimeoutUserTurnStopStrategy(user_speech_timeout=settings.vad.stop_secs)
    meaning: list[BaseUserTurnStopStrategy] = (
        [
            CompleteTranscriptUserTurnStopStrategy(
                intonation=analyzer,
                alone_after_secs=settings.turn.complete_transcript_alone_after_secs,
                sentence_ends=sentence_ends,
            )
        ]
        if settings.turn.end_on_complete_transcript
        else []
    )
    if settings.turn.speculative:
        # The LLM answers a pause's transcript while the others still weigh the pause,
        # and while a decision waits out `turn.min_silence_secs`.
        return [
            SpeculativeUserTurnStopStrategy(
                detectors=[*meaning, pause],
                min_silence_secs=settings.turn.min_silence_secs,
                # Words that plainly go on wait as long as smart-turn would at most.
                goes_on_secs=settings.turn.max_silence_secs,
                hearing_voice=(lambda: pauses.hearing_voice) if pauses else None,
                silence_heard=_pause_heard(settings, pauses),
                watch_audio=pauses.watch if pauses else None,
                sentence_ends=sentence_ends,
                sentence_end_secs=settings.turn.sentence_end_secs,
                sure_sentence_end_secs=settings.turn.sure_sentence_end_secs,
            )
        ]
    return [*meaning, pause]


def judge_sentence_ends(settings: Settings, llm: object) -> SentenceEnds | None:
    """Let the LLM judge whether a held reply's words end a sentence, where it can
    (turns/sentence_end.py) and a shorter floor would use it."""
    turn = settings.turn
    if not (turn.speculative and turn.sentence_end_secs < turn.min_silence_secs):
        return None
    if not (isinstance(llm, LocalLLMService) and llm.judges_sentence_ends):
        return None
    sure = turn.sure_sentence_end_secs < turn.sentence_end_secs
    llm.sentence_end = SentenceEnds(
        turn.sentence_end_probability, turn.sure_sentence_end_probability if sure else None
    )
    return llm.sentence_end


def user_turn_strategies(
    settings: Settings,
    models: SharedModels,
    pauses: SilenceOnset | None = None,
    sentence_ends: SentenceEnds | None = None,
) -> UserTurnStrategies:
    """When the person's turn starts and ends.

    Start: Pipecat's defaults, the VAD and a transcript that arrives while no turn is open.
    Keep the latter: under load Whisper's words can come after the turn's stop watchdog
    (Pipecat's `user_turn_stop_timeout`, 5 s) ended the turn with none; the transcript
    then opens a turn of its own, which the stop strategies end at once, and it is
    answered (tests/test_late_transcripts.py).
    """
    return UserTurnStrategies(stop=_turn_stop_strategies(settings, models, pauses, sentence_ends))


def _synthesise_ahead(settings: Settings, llm: object, tts: object) -> None:
    """Let the TTS start on a held reply's first piece (providers/tts/ahead.py)."""
    words = settings.tts.first_clause_words
    if not (settings.tts.synthesise_ahead and settings.turn.speculative and words):
        return
    if isinstance(llm, LocalLLMService) and isinstance(tts, SynthesisesAhead):
        llm.ahead = FirstPieceAhead(tts, min_words=words)


def say_repeat_phrase(settings: Settings) -> list[FrameProcessor]:
    """The fixed request to repeat (processors/ask_to_repeat.py), unless the LLM words it."""
    phrase = settings.turn.repeat_phrase.strip()
    if not phrase:
        return []
    return [AskToRepeat(phrase=phrase)]


def build_worker(
    transport: BaseTransport,
    models: SharedModels,
    settings: Settings,
    *,
    observers: Sequence[BaseObserver] = (),
    enable_rtvi: bool = False,
    conversation_id: str | None = None,
) -> PipelineWorker:
    """One conversation: transport -> STT -> context -> LLM -> TTS -> transport."""
    stt_spec = providers.chosen(settings, "stt")[0]
    stt = stt_spec.build(settings, models.get(stt_spec))
    llm = build_llm(settings, models)
    history = HistoryLimiter(
        max_turns=settings.llm.max_history_turns, max_tokens=settings.llm.max_history_tokens
    )
    tts = build_tts(settings, models)
    _synthesise_ahead(settings, llm, tts)
    sentence_ends = judge_sentence_ends(settings, llm)
    filler = (
        [
            LateReplyFiller(
                audio=models.filler,
                sample_rate=output_sample_rate(settings, models),
                after_s=settings.tts.filler.after_secs,
            )
        ]
        if models.filler
        else []
    )

    vad = _vad_analyzer(settings, models)
    pauses = _follow_pauses(settings, vad, stt)
    context = LLMContext()
    empty_turns = EmptyUserTurnConfig(interrupted_prompt=None)
    aggregators = LLMContextAggregatorPair(
        context,
        user_params=LLMUserAggregatorParams(
            vad_analyzer=vad,
            empty_user_turn=empty_turns,
            user_turn_strategies=user_turn_strategies(settings, models, pauses, sentence_ends),
        ),
    )
    RepeatRequests(empty_turns).attach(aggregators.user(), aggregators.assistant(), stt)
    transport_input = transport.input()
    if isinstance(transport_input, BaseInputTransport):
        join_caller_audio(transport_input, settings.server.audio_in_chunk_ms)
    pipeline = Pipeline(
        [
            transport_input,
            stt,
            aggregators.user(),
            InputAudioStop(),
            # While the bot speaks, the VAD listens with `vad.barge_in` (words cut it off sooner).
            *_barge_in_switch(settings),
            history,
            *say_repeat_phrase(settings),
            llm,
            *filler,
            tts,
            transport.output(),
            aggregators.assistant(),
        ]
    )
    return PipelineWorker(
        pipeline,
        params=PipelineParams(
            audio_in_sample_rate=INPUT_SAMPLE_RATE,
            audio_out_sample_rate=output_sample_rate(settings, models),
            enable_metrics=True,
        ),
        # One observer task for all of the session's observers instead of one each.
        observers=[ObserverGroup(observers)] if observers else [],
        enable_rtvi=enable_rtvi,
        # RTVI clients must not get a cut-off reply's left-over text with the next reply.
        rtvi_processor=VoicebotRTVIProcessor() if enable_rtvi else None,
        # Spans go to the tracer provider voicebot.observability.tracing set up at start.
        enable_tracing=settings.observability.tracing.enabled,
        # Pipecat's turn tracking feeds its tracing only; off, it is one observer task less.
        enable_turn_tracking=settings.observability.tracing.enabled,
        conversation_id=conversation_id,
    )
