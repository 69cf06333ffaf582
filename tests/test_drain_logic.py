"""The drain's rules with frames pushed by hand: when a session counts as mid-turn, and the order
of a drain (refuse, wait for turns, close). The real SIGTERM path is tests/test_drain.py."""

from __future__ import annotations

import asyncio
import time

from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    Frame,
    LLMContextFrame,
    LLMFullResponseEndFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from pipecat.observers.base_observer import FramePushed
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from voicebot.server import drain as drain_module
from voicebot.server.drain import Drain, TurnActivity


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def push(activity: TurnActivity, frame: Frame) -> None:
    processor = FrameProcessor()
    await activity.on_push_frame(
        FramePushed(
            source=processor,
            destination=processor,
            frame=frame,
            direction=FrameDirection.DOWNSTREAM,
            timestamp=0,
        )
    )


async def test_a_turn_is_busy_from_speech_to_the_end_of_the_bot_audio() -> None:
    clock = FakeClock()
    activity = TurnActivity(clock=clock)
    clock.now += 10
    assert not activity.busy  # a session between turns
    await push(activity, UserStartedSpeakingFrame())
    clock.now += 10
    assert activity.busy  # the user is speaking
    await push(activity, UserStoppedSpeakingFrame())
    clock.now += 2
    assert activity.busy  # STT: the reply has not started yet
    await push(activity, LLMContextFrame(context=LLMContext()))
    await push(activity, LLMFullResponseEndFrame())
    await push(activity, BotStartedSpeakingFrame())
    clock.now += 30
    assert activity.busy  # the bot is still speaking
    await push(activity, BotStoppedSpeakingFrame())
    assert activity.busy  # just stopped: its last frames may still be on their way
    clock.now += 1
    assert not activity.busy


async def test_a_turn_with_nothing_to_answer_stops_counting_after_a_while() -> None:
    clock = FakeClock()
    activity = TurnActivity(clock=clock)
    await push(activity, UserStartedSpeakingFrame())
    await push(activity, UserStoppedSpeakingFrame())
    clock.now += 1
    assert activity.busy
    clock.now += drain_module.REPLY_START_SECS
    assert not activity.busy


async def test_drain_refuses_waits_for_the_turn_then_closes_every_session() -> None:
    drain = Drain()
    closed: list[str] = []
    order: list[str] = []

    async def session(name: str, talking: bool) -> None:
        async def close() -> None:
            closed.append(name)
            done.set()

        done = asyncio.Event()
        with drain.track(close=close) as activity:
            if talking:
                await push(activity, BotStartedSpeakingFrame())
                await asyncio.sleep(0.5)
                order.append("turn finished")
                await push(activity, BotStoppedSpeakingFrame())
            await done.wait()

    sessions = [asyncio.create_task(session("a", True)), asyncio.create_task(session("b", False))]
    await asyncio.sleep(0.05)
    started = time.monotonic()
    draining = asyncio.create_task(drain.run(drain_secs=20))
    await asyncio.sleep(0.05)
    assert drain.draining and not closed
    await draining
    order.append("closed")
    await asyncio.gather(*sessions)
    assert sorted(closed) == ["a", "b"]
    assert order == ["turn finished", "closed"]
    assert time.monotonic() - started < 20  # the turn's end, not the time limit, ended it


async def test_drain_secs_bounds_a_turn_that_never_ends() -> None:
    drain = Drain()
    closed = asyncio.Event()

    async def close() -> None:
        closed.set()

    with drain.track(close=close) as activity:
        await push(activity, UserStartedSpeakingFrame())  # and never stops
        await drain.run(drain_secs=0.3)
    assert closed.is_set()
