"""Sessions take turns on a shared in-process LLM first come, first served."""

from __future__ import annotations

import asyncio
import threading

from tests.helpers import thread_nice
from voicebot.providers.llm.local import ModelQueue


async def test_turns_are_first_come_first_served_and_waits_are_reported() -> None:
    queue = ModelQueue("test")
    order: list[int] = []
    gate = threading.Event()

    def work(n: int) -> None:
        if n == 0:
            gate.wait(5)  # hold the model until every other session is queued
        order.append(n)

    first = asyncio.ensure_future(queue.run(lambda: work(0)))
    await asyncio.sleep(0.05)
    others = []
    for n in range(1, 5):
        others.append(asyncio.ensure_future(queue.run(lambda n=n: work(n))))  # type: ignore[misc]
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    assert queue.waiting == 4
    gate.set()
    waits = await asyncio.gather(first, *others)
    assert order == [0, 1, 2, 3, 4]
    assert queue.waiting == 0
    assert waits[0] < waits[1] and all(w > 0 for w in waits[1:])
    assert queue in ModelQueue.all()


async def test_a_session_cancelled_while_queued_never_runs() -> None:
    queue = ModelQueue("test")
    gate = threading.Event()
    ran: list[str] = []
    holder = asyncio.ensure_future(queue.run(lambda: (gate.wait(5), ran.append("holder"))))
    await asyncio.sleep(0.05)
    queued = asyncio.ensure_future(queue.run(lambda: ran.append("queued")))
    await asyncio.sleep(0.05)
    queued.cancel()
    await asyncio.sleep(0.01)
    assert queue.waiting == 0
    gate.set()
    await holder
    await asyncio.sleep(0.05)
    assert ran == ["holder"]


async def test_waiting_holds_no_thread_of_the_default_executor() -> None:
    # Other blocking work (Piper, file reads) must go on while sessions queue for the model.
    queue = ModelQueue("test")
    gate = threading.Event()
    waiters = [asyncio.ensure_future(queue.run(lambda: gate.wait(5))) for _ in range(40)]
    await asyncio.sleep(0.05)
    # With the waiters holding executor threads this would wait for the gate (and time out).
    assert await asyncio.wait_for(asyncio.to_thread(lambda: "done"), timeout=4) == "done"
    gate.set()
    await asyncio.gather(*waiters)


async def test_the_models_thread_and_its_children_yield_to_audio() -> None:
    base = await asyncio.to_thread(thread_nice)
    seen: dict[str, int] = {}

    def work() -> None:
        seen["model"] = thread_nice()
        child = threading.Thread(target=lambda: seen.__setitem__("child", thread_nice()))
        child.start()
        child.join()

    await ModelQueue("test", compute_nice=5).run(work)
    assert seen == {"model": min(19, base + 5), "child": min(19, base + 5)}
    # The event loop's thread keeps its priority.
    assert thread_nice() == base
