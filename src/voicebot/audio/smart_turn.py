"""smart-turn v3 end-of-turn analyzer that borrows the process-wide ONNX session."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import onnxruntime
from pipecat.audio.turn.base_turn_analyzer import EndOfTurnState
from pipecat.audio.turn.smart_turn.base_smart_turn import SmartTurnParams
from pipecat.audio.turn.smart_turn.local_smart_turn_v3 import LocalSmartTurnAnalyzerV3
from pipecat.metrics.metrics import MetricsData

from voicebot.pipecat_compat import SmartTurnModelThread, init_shared_smart_turn
from voicebot.threads import yield_to_audio
from voicebot.turns.complete_transcript import VerdictListener


class SharedSmartTurnAnalyzer(SmartTurnModelThread, LocalSmartTurnAnalyzerV3):
    """Pipecat's local smart-turn v3 analyzer without a model load per session.

    The turn buffer and timing state are per analyzer (per session); the ONNX session
    is shared, which is safe because ONNX Runtime sessions are stateless and thread-safe.

    The model runs on a thread `nice` steps below the rest (`turn.smart_turn_nice`). It
    runs at the VAD's stop, while Whisper transcribes the same pause, and its ~0.1 s of
    CPU slowed Whisper's decode: at a lower priority it takes the cores Whisper leaves.
    Its answer is needed only when the transcript does not read complete
    (turns/complete_transcript.py).
    """

    def __init__(
        self,
        *,
        session: onnxruntime.InferenceSession,
        sample_rate: int | None = None,
        params: SmartTurnParams | None = None,
        nice: int = 0,
    ) -> None:
        # LocalSmartTurnAnalyzerV3.__init__ creates an InferenceSession; this borrows one.
        init_shared_smart_turn(self, session, sample_rate=sample_rate, params=params)
        self._nice = nice
        self._verdict_listeners: list[VerdictListener] = []

    def add_verdict_listener(self, listener: VerdictListener) -> None:
        """Call `listener` with every end-of-turn verdict (turns/complete_transcript.py)."""
        self._verdict_listeners.append(listener)

    async def analyze_end_of_turn(self) -> tuple[EndOfTurnState, MetricsData | None]:
        state, metrics = await super().analyze_end_of_turn()
        for listener in self._verdict_listeners:
            await listener(state)
        return state, metrics

    def new_model_thread(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix="smart-turn",
            initializer=yield_to_audio,
            initargs=(self._nice,),
        )
