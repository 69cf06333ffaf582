"""Assembles one session's pipeline from the settings and the shared models; no I/O of its own."""

from __future__ import annotations

from collections.abc import Sequence

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
from pipecat.transports.base_transport import BaseTransport
from pipecat.turns.user_stop import (
    BaseUserTurnStopStrategy,
    SpeechTimeoutUserTurnStopStrategy,
    TurnAnalyzerUserTurnStopStrategy,
)
from pipecat.turns.user_turn_strategies import UserTurnStrategies

from voicebot.config import Settings
from voicebot.llm_factory import build_llm
from voicebot.models import SharedModels
from voicebot.processors.filler import LateReplyFiller
from voicebot.processors.history import HistoryLimiter
from voicebot.processors.stt_whisper import FasterWhisperSTTService
from voicebot.processors.turn_smart import SharedSmartTurnAnalyzer
from voicebot.processors.vad_energy import EnergyVADAnalyzer
from voicebot.processors.vad_silero import SharedSileroVADAnalyzer
from voicebot.protocol import INPUT_SAMPLE_RATE
from voicebot.tts_factory import build_tts, output_sample_rate


def _vad_analyzer(settings: Settings, models: SharedModels) -> VADAnalyzer:
    params = VADParams(
        confidence=settings.vad.confidence,
        start_secs=settings.vad.start_secs,
        stop_secs=settings.vad.stop_secs,
        min_volume=settings.vad.min_volume,
    )
    if settings.vad.provider == "energy":
        return EnergyVADAnalyzer(params=params)
    return SharedSileroVADAnalyzer(session=models.silero_session, params=params)


def _turn_stop_strategies(
    settings: Settings, models: SharedModels
) -> list[BaseUserTurnStopStrategy]:
    if settings.turn.smart_turn and models.smart_turn_session is not None:
        analyzer = SharedSmartTurnAnalyzer(
            session=models.smart_turn_session,
            params=SmartTurnParams(stop_secs=settings.turn.max_silence_secs),
        )
        return [TurnAnalyzerUserTurnStopStrategy(turn_analyzer=analyzer)]
    return [SpeechTimeoutUserTurnStopStrategy(user_speech_timeout=settings.vad.stop_secs)]


def build_worker(
    transport: BaseTransport,
    models: SharedModels,
    settings: Settings,
    *,
    observers: Sequence[BaseObserver] = (),
    enable_rtvi: bool = False,
) -> PipelineWorker:
    """One conversation: transport -> STT -> context -> LLM -> TTS -> transport."""
    stt = FasterWhisperSTTService(engine=models.stt, language=settings.stt.language)
    llm = build_llm(settings, models)
    history = HistoryLimiter(
        max_turns=settings.llm.max_history_turns, max_tokens=settings.llm.max_history_tokens
    )
    tts = build_tts(settings, models)
    filler = (
        [
            LateReplyFiller(
                audio=models.filler,
                sample_rate=output_sample_rate(settings, models),
                after_s=settings.tts.filler.after_ms / 1000,
            )
        ]
        if models.filler
        else []
    )

    vad = _vad_analyzer(settings, models)
    context = LLMContext()
    aggregators = LLMContextAggregatorPair(
        context,
        user_params=LLMUserAggregatorParams(
            vad_analyzer=vad,
            user_turn_strategies=UserTurnStrategies(stop=_turn_stop_strategies(settings, models)),
        ),
    )
    pipeline = Pipeline(
        [
            transport.input(),
            stt,
            aggregators.user(),
            history,
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
        observers=list(observers),
        enable_rtvi=enable_rtvi,
    )
