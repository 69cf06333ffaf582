"""smart-turn v3 end-of-turn analyzer that borrows the process-wide ONNX session."""

from __future__ import annotations

import onnxruntime
from pipecat.audio.turn.smart_turn.base_smart_turn import SmartTurnParams
from pipecat.audio.turn.smart_turn.local_smart_turn_v3 import LocalSmartTurnAnalyzerV3

from voicebot.pipecat_compat import init_shared_smart_turn


class SharedSmartTurnAnalyzer(LocalSmartTurnAnalyzerV3):
    """Pipecat's local smart-turn v3 analyzer without a model load per session.

    The turn buffer and timing state are per analyzer (per session); the ONNX session
    is shared, which is safe because ONNX Runtime sessions are stateless and thread-safe.
    """

    def __init__(
        self,
        *,
        session: onnxruntime.InferenceSession,
        sample_rate: int | None = None,
        params: SmartTurnParams | None = None,
    ) -> None:
        # LocalSmartTurnAnalyzerV3.__init__ creates an InferenceSession; this borrows one.
        init_shared_smart_turn(self, session, sample_rate=sample_rate, params=params)
