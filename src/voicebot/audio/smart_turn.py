"""smart-turn v3 end-of-turn analyzer that borrows the process-wide ONNX session."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

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

    With `judge_on_words` the model runs only when its verdict can change the turn's
    end: when the pause's transcript does not read complete (`words_read`). A transcript
    that reads complete ends the turn at the floor whatever smart-turn says
    (turns/complete_transcript.py, turns/speculative.py), so judging it cost ~0.12 CPU-s
    per pause for nothing, and held up the user aggregator (Pipecat awaits the verdict
    there) while the transcript queued behind it. At the VAD's stop the pause's audio is
    kept; the verdict on it is reached when the words say it is needed, and a COMPLETE
    one reaches Pipecat's strategy with the next piece of audio (`append_audio`).
    """

    def __init__(
        self,
        *,
        session: onnxruntime.InferenceSession,
        sample_rate: int | None = None,
        params: SmartTurnParams | None = None,
        nice: int = 0,
        judge_on_words: bool = False,
    ) -> None:
        # LocalSmartTurnAnalyzerV3.__init__ creates an InferenceSession; this borrows one.
        init_shared_smart_turn(self, session, sample_rate=sample_rate, params=params)
        self._nice = nice
        self._verdict_listeners: list[VerdictListener] = []
        self._judge_on_words = judge_on_words
        self._speech = False
        # Whether the words since the speech began read complete (None: not known).
        self._words_complete: bool | None = None
        # The audio of a pause not judged yet, and a COMPLETE verdict reached after the stop.
        self._unjudged: list[tuple[float, Any]] | None = None
        self._late_verdict: tuple[EndOfTurnState, MetricsData | None] | None = None
        # Counts the pauses forgotten, so that a verdict reached too late is dropped.
        self._pauses_forgotten = 0
        # Pauses judged and pauses whose verdict was not needed.
        self.judged = 0
        self.skipped = 0

    def add_verdict_listener(self, listener: VerdictListener) -> None:
        """Call `listener` with every end-of-turn verdict (turns/complete_transcript.py)."""
        self._verdict_listeners.append(listener)

    def append_audio(self, buffer: bytes, is_speech: bool) -> EndOfTurnState:
        if is_speech and not self._speech:
            # New words are coming: the last pause and what its words said are stale.
            self._forget_pause()
        self._speech = is_speech
        state = super().append_audio(buffer, is_speech)
        return EndOfTurnState.COMPLETE if self._late_verdict is not None else state

    async def analyze_end_of_turn(self) -> tuple[EndOfTurnState, MetricsData | None]:
        if self._late_verdict is not None:
            # Pipecat asks for the COMPLETE verdict `append_audio` announced.
            late = self._late_verdict
            self.clear()
            return late
        heard = self.heard()
        if self._judge_on_words and heard and self._words_complete is not False:
            self._unjudged = heard
            self.skipped += 1
            return EndOfTurnState.INCOMPLETE, None
        return await self._judge(heard, clear_if_complete=True)

    async def words_read(self, complete: bool | None) -> None:
        """What the pause's words say: complete, not complete, or not known (words spoken
        since are still to be transcribed). Judges a kept pause when it is needed."""
        self._words_complete = complete
        if complete is not False or self._unjudged is None:
            return
        heard, self._unjudged = self._unjudged, None
        self.skipped -= 1
        pause = self._pauses_forgotten
        state, metrics = await self._judge(heard, clear_if_complete=False)
        if state == EndOfTurnState.COMPLETE and pause == self._pauses_forgotten:
            # Still the same pause: Pipecat hears of it with the next piece of audio.
            # (Unfinished, it leaves the turn to the silence limit, as at the stop.)
            self._late_verdict = (state, metrics)

    def clear(self) -> None:
        super().clear()
        self._forget_pause()

    def _forget_pause(self) -> None:
        self._pauses_forgotten += 1
        self._words_complete = None
        self._unjudged = None
        self._late_verdict = None

    async def _judge(
        self, heard: list[tuple[float, Any]], *, clear_if_complete: bool
    ) -> tuple[EndOfTurnState, MetricsData | None]:
        state, metrics = await self.judge(heard)
        self.judged += bool(heard)
        if clear_if_complete and state == EndOfTurnState.COMPLETE:
            self.clear()
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
