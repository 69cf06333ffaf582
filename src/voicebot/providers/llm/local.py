"""Base for in-process LLMs: the context becomes chat messages, a worker thread generates,
and pieces of the reply stream into the pipeline as they are produced."""

from __future__ import annotations

import asyncio
import os
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, ClassVar

from loguru import logger
from pipecat.adapters.llm.services.open_ai_adapter import OpenAILLMAdapter
from pipecat.frames.frames import (
    EndFrame,
    Frame,
    LLMContextFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    MetricsFrame,
)
from pipecat.metrics.metrics import LLMTokenUsage
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.frame_processor import FrameCallback, FrameDirection
from pipecat.services.llm_service import LLMService
from pipecat.services.settings import LLMSettings
from pipecat.utils.tracing.service_decorators import traced_llm
from pipecat.utils.types import assert_given

from voicebot.observability.metrics_data import QueueWaitMetricsData, TokensPerSecondMetricsData
from voicebot.pipecat_compat import llm_is_speculating
from voicebot.processors.reply_limit import ReplyStoppedAtLimitFrame
from voicebot.threads import yield_to_audio

if TYPE_CHECKING:
    from voicebot.config import Settings
    from voicebot.providers.tts.ahead import FirstPieceAhead
    from voicebot.turns.sentence_end import SentenceEnds

_END = object()


def reply_options(settings: Settings) -> dict[str, Any]:
    """The stage-wide `llm.*` knobs every in-process LLM service takes."""
    llm = settings.llm
    return {
        "max_tokens": llm.max_tokens,
        "temperature": llm.temperature,
        "repeat_penalty": llm.repeat_penalty,
        "system_instruction": llm.system_prompt,
    }


def cpu_threads(configured: int = 0) -> int:
    """Threads for CPU inference: `configured`, or every core this process may use."""
    return configured or max(1, os.cpu_count() or 1)


def llm_decode_threads(configured: int = 0) -> int:
    """Threads that write an in-process LLM's reply token by token: `configured`, or every
    core but one (at least one). A reply streams while the VAD, smart-turn and the TTS's
    first audio need the CPU too, and llama.cpp's decode threads wait for each other after
    every operation: one that loses its core to them holds up the rest at every token.
    Prompts are read with every core (`cpu_threads`)."""
    return configured or max(1, cpu_threads() - 1)


Emit = Callable[[str], None]

# How often a held reply's paused generation looks whether another reply waits for the
# model (`LocalLLMService._wait_while_held`), and the longest it waits: a turn is
# confirmed or withdrawn within `turn.max_silence_secs` of its pause (2 s by default), so
# this only bounds a speculation something failed to settle.
HELD_POLL_S = 0.05
HELD_LIMIT_S = 10.0


class ModelQueue:
    """First come, first served turns on one in-process model shared by every session.

    Generations run one at a time on the model's own thread, in the order they were
    asked for. A session waiting its turn waits in the event loop and holds no thread, so
    a queue of sessions never starves the default executor that other blocking work
    (Piper's synthesis, file reads) shares. `waiting` is read by /metrics.
    """

    _instances: ClassVar[weakref.WeakSet[ModelQueue]] = weakref.WeakSet()

    def __init__(self, name: str, compute_nice: int = 0) -> None:
        self.name = name
        ModelQueue._instances.add(self)
        # The model's thread (and the OpenMP/ggml threads it starts) yields to audio work.
        self._executor = ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix=f"llm-{name}",
            initializer=yield_to_audio,
            initargs=(compute_nice,),
        )
        self._count_lock = threading.Lock()
        self.waiting = 0

    @classmethod
    def all(cls) -> list[ModelQueue]:
        """The queues of the models loaded in this process."""
        return list(cls._instances)

    async def run(self, work: Callable[[], None]) -> float:
        """Run `work` on the model's thread when its turn comes; returns the seconds waited.

        Cancelled before its turn, the work is dropped from the queue.
        """
        queued_at = time.perf_counter()
        started_at: float | None = None

        def leave_queue() -> None:
            nonlocal started_at
            with self._count_lock:
                if started_at is None:
                    started_at = time.perf_counter()
                    self.waiting -= 1

        def turn() -> None:
            leave_queue()
            work()

        with self._count_lock:
            self.waiting += 1
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, turn)
        finally:
            leave_queue()
        assert started_at is not None
        return started_at - queued_at


class LocalLLMService(LLMService[OpenAILLMAdapter]):
    """Pipecat's LLM base for a model in this process; subclasses implement `_generate`.

    Pipecat's OpenAI adapter turns the context into chat messages, so history, system
    prompt and interruptions behave as for any Pipecat LLM. `_generate` runs in a worker
    thread and hands each piece to `emit`; an interruption cancels the streaming
    coroutine, which sets `stop` so the thread ends at its next piece and frees the model.
    A reply the speculation gate holds is also handed to `ahead`, when set, so the TTS
    can start on its first piece (providers/tts/ahead.py); the generation then waits
    until the gate releases the reply, so a reply withdrawn because the person went on
    costs its first piece, not all of it. When `sentence_end` is set and the model can
    judge it (`judges_sentence_ends`), a held reply first tells it how likely the
    person's words end a sentence (turns/sentence_end.py).
    """

    adapter_class = OpenAILLMAdapter
    ahead: FirstPieceAhead | None = None
    sentence_end: SentenceEnds | None = None
    judges_sentence_ends: ClassVar[bool] = False
    # Set while the reply being written may go on; cleared while a held reply waits for
    # the gate after its first piece (`_process_context`).
    _resume: threading.Event | None = None
    _ending = False

    def __init__(
        self,
        *,
        model_name: str,
        queue: ModelQueue,
        system_instruction: str | None = None,
        max_tokens: int = 80,
        temperature: float = 0.3,
        repeat_penalty: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            settings=LLMSettings(
                model=model_name,
                system_instruction=system_instruction,
                temperature=temperature,
                max_tokens=max_tokens,
                top_p=None,
                top_k=None,
                frequency_penalty=None,
                presence_penalty=None,
                seed=None,
                filter_incomplete_user_turns=False,
                user_turn_completion_config=None,
            ),
            **kwargs,
        )
        self._queue = queue
        # Pipecat's LLMSettings has no such field (its penalties are OpenAI's).
        self.repeat_penalty = repeat_penalty

    def can_generate_metrics(self) -> bool:
        return True

    async def push_frame(
        self, frame: Frame, direction: FrameDirection = FrameDirection.DOWNSTREAM
    ) -> None:
        if self.ahead is not None and direction == FrameDirection.DOWNSTREAM:
            if isinstance(frame, LLMFullResponseStartFrame):
                self.ahead.reply_started()
            elif isinstance(frame, LLMTextFrame) and llm_is_speculating(self):
                await self.ahead.held_text(frame.text)
        await super().push_frame(frame, direction)
        if self._resume is not None and not llm_is_speculating(self):
            self._resume.set()  # the gate released the reply (or it was never held)

    async def queue_frame(
        self,
        frame: Frame,
        direction: FrameDirection = FrameDirection.DOWNSTREAM,
        callback: FrameCallback | None = None,
    ) -> None:
        # A session ending gracefully: its EndFrame queues behind the reply being written,
        # so a held reply waiting for a release that will not come writes on instead, and
        # no reply waits from then on.
        if isinstance(frame, EndFrame):
            self._ending = True
            if self._resume is not None:
                self._resume.set()
        await super().queue_frame(frame, direction, callback)

    def _generate(self, messages: list[dict[str, Any]], emit: Emit, stop: threading.Event) -> bool:
        """Produce the reply to `messages` piece by piece (called in a worker thread);
        whether it stopped at `max_tokens` (False when it ended or was stopped)."""
        raise NotImplementedError

    def _sentence_end_probability(self, messages: list[dict[str, Any]]) -> float | None:
        """How likely the last (user) message's words end a sentence, judged without
        their final punctuation; None when the model cannot tell (called in the worker
        thread, before `_generate`)."""
        raise NotImplementedError

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, LLMContextFrame):
            await self.push_frame(LLMFullResponseStartFrame())
            await self.start_processing_metrics()
            try:
                await self._process_context(frame.context)
            except Exception as e:
                await self.push_error(error_msg=f"{self.name} generation failed: {e}", exception=e)
            finally:
                await self.stop_processing_metrics()
                await self.push_frame(LLMFullResponseEndFrame())
        else:
            await self.push_frame(frame, direction)

    async def _messages(self, context: LLMContext) -> list[dict[str, Any]]:
        params = await self.get_llm_adapter().get_llm_invocation_params(
            context,
            system_instruction=assert_given(self._settings.system_instruction),
            convert_developer_to_user=True,
        )
        messages: list[dict[str, Any]] = []
        for message in params["messages"]:
            content = message.get("content")
            if not isinstance(content, str):
                # Chat templates of small local models expect plain strings, not parts.
                parts: Any = content or []
                content = "".join(str(p.get("text", "")) for p in parts if isinstance(p, dict))
            messages.append({"role": message["role"], "content": content})
        return messages

    @traced_llm
    async def _process_context(self, context: LLMContext) -> None:
        """Stream the reply to `context`; raises what the model raised."""
        messages = await self._messages(context)
        judge = self._judges_sentence_end(messages)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        stop = threading.Event()
        resume = self._resume = threading.Event()
        resume.set()
        paused = False  # cleared `resume` once, after the held reply's first piece
        held_s = [0.0]
        at_limit = [False]
        written: list[str] = []

        def emit(piece: str) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, piece)
            held_s[0] += self._wait_while_held(resume, stop)

        def run() -> None:
            try:
                if judge is not None and not stop.is_set():
                    start = time.perf_counter()
                    probability = self._sentence_end_probability(messages)
                    if probability is not None:
                        loop.call_soon_threadsafe(
                            judge.publish, messages[-1]["content"], probability
                        )
                        logger.bind(
                            probability=round(probability, 3),
                            ms=round(1000 * (time.perf_counter() - start), 1),
                        ).debug("judged whether the words end a sentence")
                if not stop.is_set():  # interrupted while waiting for its turn
                    at_limit[0] = self._generate(messages, emit, stop)
            except Exception as e:
                loop.call_soon_threadsafe(queue.put_nowait, e)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, _END)

        await self.start_ttfb_metrics()
        # Not awaited here: the pieces are read from `queue` while the model generates.
        worker = asyncio.ensure_future(self._queue.run(run))
        first: float | None = None
        try:
            while (item := await queue.get()) is not _END:
                if isinstance(item, Exception):
                    raise item
                if first is None:
                    first = time.perf_counter()
                    await self.stop_ttfb_metrics()
                written.append(item)
                await self._push_llm_text(item)
                if not paused and self._first_piece_held():
                    paused = True
                    resume.clear()
        except BaseException:
            worker.cancel()  # still queued: dropped; already running: ends at `stop`
            raise
        finally:
            stop.set()
            resume.set()
            if self._resume is resume:
                self._resume = None
        waited = await worker
        pieces = len(written)
        if at_limit[0]:
            # The TTS drops the unfinished sentence (processors/reply_limit.py).
            await self.push_frame(ReplyStoppedAtLimitFrame(text="".join(written)))
        logger.bind(pieces=pieces, queued_s=round(waited, 3), held_s=round(held_s[0], 3)).debug(
            "local LLM reply streamed"
        )
        wait = QueueWaitMetricsData(processor=self.name, model=self._queue.name, value=waited)
        await self.push_frame(MetricsFrame(data=[wait]))
        await self._report_usage(first, pieces, held_s[0])

    def _first_piece_held(self) -> bool:
        """Whether the reply is held and its first piece has gone to the TTS ahead."""
        if self.ahead is None or self._ending:
            return False
        return self.ahead.first_piece_cut and llm_is_speculating(self)

    def _wait_while_held(self, resume: threading.Event, stop: threading.Event) -> float:
        """(model thread) Wait, before the next piece, while `resume` is clear: the reply
        is held and the TTS has its first piece. The rest is written once the gate
        releases it; a withdrawn reply (`stop`) ends here. Another reply waiting for the
        model ends the wait too (a held reply must not keep the model from the sessions
        whose turns have ended), and so does `HELD_LIMIT_S`; either sets `resume`, and the
        reply, paused once only, is written to its end. The session ending sets `resume`
        too (`queue_frame`). Returns the seconds waited."""
        start = time.perf_counter()
        while not (resume.is_set() or stop.is_set()):
            if self._queue.waiting or time.perf_counter() - start >= HELD_LIMIT_S:
                resume.set()
                break
            resume.wait(HELD_POLL_S)
        return time.perf_counter() - start

    def _judges_sentence_end(self, messages: list[dict[str, Any]]) -> SentenceEnds | None:
        """Where to tell how likely the words end a sentence: only for a reply the gate
        holds (the turn is still being weighed) to words of the person's. Only an LLM
        that `judges_sentence_ends` is given `sentence_end` (pipeline.judge_sentence_ends)."""
        if self.sentence_end is None:
            return None
        if not messages or messages[-1]["role"] != "user" or not llm_is_speculating(self):
            return None
        return self.sentence_end

    async def _report_usage(self, first: float | None, pieces: int, held_s: float = 0.0) -> None:
        # Tokens per second of writing: the time a held reply waited is not counted.
        elapsed = time.perf_counter() - first - held_s if first is not None else 0.0
        if pieces > 1 and elapsed > 0:
            speed = TokensPerSecondMetricsData(
                processor=self.name,
                model=self._settings.model,
                value=round((pieces - 1) / elapsed, 1),
            )
            await self.push_frame(MetricsFrame(data=[speed]))
        await self.start_llm_usage_metrics(
            LLMTokenUsage(prompt_tokens=0, completion_tokens=pieces, total_tokens=pieces)
        )
