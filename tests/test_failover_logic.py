"""Failover and fallback decisions in milliseconds, with fakes on Pipecat's bases."""

from __future__ import annotations

from pipecat.frames.frames import (
    ErrorFrame,
    LLMContextFrame,
    LLMTextFrame,
    MetricsFrame,
    TTSAudioRawFrame,
    TTSSpeakFrame,
)
from pipecat.pipeline.worker import PipelineParams
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.tests.utils import run_test

from tests.fakes import FakeLLMService, FakeTTSService
from voicebot.errors import ProviderError, is_retryable
from voicebot.observability.metrics_data import FallbackMetricsData
from voicebot.providers.breaker import CircuitBreaker
from voicebot.providers.llm.failover import DEFAULT_APOLOGY, Deadlines, FailoverLLMService
from voicebot.providers.tts.fallback import FallbackTTSService


def ask(text: str) -> LLMContextFrame:
    return LLMContextFrame(LLMContext(messages=[{"role": "user", "content": text}]))


def text_of(frames: list[object]) -> str:
    return "".join(f.text for f in frames if isinstance(f, LLMTextFrame))


def fallback_metrics(frames: list[object]) -> list[FallbackMetricsData]:
    return [
        d
        for f in frames
        if isinstance(f, MetricsFrame)
        for d in f.data
        if isinstance(d, FallbackMetricsData)
    ]


async def test_a_retryable_failure_fails_over_then_rests_the_primary_for_the_cool_down() -> None:
    primary = FakeLLMService(fail="raise", retryable=True)
    fallback = FakeLLMService(reply="From the fallback.")
    llm = FailoverLLMService(primary=primary, fallback=fallback, cooldown_secs=60)
    down, _ = await run_test(llm, frames_to_send=[ask("One?"), ask("Two?")])
    assert text_of(down) == "From the fallback.From the fallback."
    assert primary.calls == 1  # the second turn skipped the resting primary
    [metric] = fallback_metrics(down)
    assert metric.value == 1 and metric.retryable


async def test_a_retryable_failure_tries_the_primary_again_after_the_cool_down() -> None:
    primary = FakeLLMService(fail="raise")
    llm = FailoverLLMService(primary=primary, fallback=FakeLLMService(), cooldown_secs=0)
    await run_test(llm, frames_to_send=[ask("One?"), ask("Two?")])
    assert primary.calls == 2


async def test_a_failure_that_will_not_pass_skips_the_primary_for_the_session() -> None:
    primary = FakeLLMService(fail="raise", retryable=False)  # e.g. a 401: wrong key
    llm = FailoverLLMService(primary=primary, fallback=FakeLLMService(), cooldown_secs=0)
    down, _ = await run_test(llm, frames_to_send=[ask("One?"), ask("Two?"), ask("Three?")])
    assert primary.calls == 1
    assert [m.retryable for m in fallback_metrics(down)] == [False]


async def test_a_failure_mid_reply_is_reported_not_repeated() -> None:
    primary = FakeLLMService(reply="Paris is lovely.", fail="midway")
    fallback = FakeLLMService(reply="Never heard.")
    llm = FailoverLLMService(primary=primary, fallback=fallback, cooldown_secs=0)
    down, up = await run_test(llm, frames_to_send=[ask("One?")])
    assert text_of(down) == "Paris"  # what was already said stays; nothing is said twice
    assert fallback.calls == 0
    assert any(isinstance(f, ErrorFrame) and "mid-reply" in f.error for f in up)


async def test_nothing_answers_so_the_apology_is_spoken_and_reported() -> None:
    llm = FailoverLLMService(primary=FakeLLMService(fail="raise"), apology="Sorry, not now.")
    down, up = await run_test(llm, frames_to_send=[ask("One?")])
    assert text_of(down) == "Sorry, not now."
    [error] = [f for f in up if isinstance(f, ErrorFrame)]
    assert error.error.startswith("llm: no answer") and "fake LLM refused" in error.error


async def test_a_failing_fallback_also_ends_in_the_apology() -> None:
    llm = FailoverLLMService(
        primary=FakeLLMService(fail="raise"), fallback=FakeLLMService(fail="raise")
    )
    down, up = await run_test(llm, frames_to_send=[ask("One?")])
    assert text_of(down) == DEFAULT_APOLOGY and llm.answered_by is None
    assert any(isinstance(f, ErrorFrame) and "no answer" in f.error for f in up)


SHORT = {"primary": Deadlines(first_token_secs=0.2, token_stall_secs=0.2)}


async def test_no_first_word_by_the_deadline_fails_over() -> None:
    primary, fallback = FakeLLMService(fail="stall"), FakeLLMService(reply="From the fallback.")
    llm = FailoverLLMService(primary=primary, fallback=fallback, deadlines=SHORT)
    down, _ = await run_test(llm, frames_to_send=[ask("One?")])
    assert text_of(down) == "From the fallback." and llm.failovers == 1


async def test_an_empty_reply_is_a_failure_not_an_answer() -> None:
    primary, fallback = FakeLLMService(reply=""), FakeLLMService(reply="From the fallback.")
    llm = FailoverLLMService(primary=primary, fallback=fallback)
    down, _ = await run_test(llm, frames_to_send=[ask("One?")])
    assert text_of(down) == "From the fallback." and llm.failovers == 1


async def test_a_stall_after_the_first_word_ends_the_reply_with_what_was_said() -> None:
    primary = FakeLLMService(reply="Paris is lovely.", fail="stall_midway")
    fallback = FakeLLMService(reply="Never heard.")
    llm = FailoverLLMService(primary=primary, fallback=fallback, deadlines=SHORT)
    down, up = await run_test(llm, frames_to_send=[ask("One?")])
    assert text_of(down) == "Paris" and fallback.calls == 0
    assert any(isinstance(f, ErrorFrame) and "no word for 0.2 s" in f.error for f in up)


async def test_the_breaker_is_shared_so_a_second_session_skips_the_failed_primary() -> None:
    breaker = CircuitBreaker("llm", "fake", cooldown_secs=60)
    primary = FakeLLMService(fail="raise")
    first = FailoverLLMService(primary=primary, fallback=FakeLLMService(), breaker=breaker)
    await run_test(first, frames_to_send=[ask("One?")])
    second = FailoverLLMService(primary=primary, fallback=FakeLLMService(), breaker=breaker)
    down, _ = await run_test(second, frames_to_send=[ask("Two?")])
    assert primary.calls == 1 and text_of(down) == "Paris is the capital."
    assert breaker.state == "open"


def test_half_open_lets_one_trial_through_and_its_verdict_decides() -> None:
    breaker = CircuitBreaker("llm", "fake", cooldown_secs=0)
    breaker.failed()
    assert breaker.state == "half_open"
    assert breaker.allow() and not breaker.allow()  # one trial at a time
    breaker.failed()
    assert breaker.allow()
    breaker.succeeded()
    assert breaker.state == "closed" and breaker.allow() and breaker.allow()
    breaker.failed()
    assert breaker.allow()
    breaker.abandoned()  # an interrupted trial lets the next caller try
    assert breaker.allow()


async def _speak(tts: FallbackTTSService, *texts: str) -> tuple[list[object], list[object]]:
    return await run_test(
        tts,
        frames_to_send=[TTSSpeakFrame(t) for t in texts],
        pipeline_params=PipelineParams(audio_out_sample_rate=16000),
    )


async def test_tts_stall_falls_back_within_the_first_audio_deadline() -> None:
    primary, fallback = FakeTTSService(fail="stall"), FakeTTSService()
    tts = FallbackTTSService(primary=primary, fallback=fallback, first_audio_timeout_secs=0.2)
    down, _ = await _speak(tts, "Your table is ready.")
    assert any(isinstance(f, TTSAudioRawFrame) for f in down)
    assert fallback.texts == ["Your table is ready."] and tts.fallbacks == 1


async def test_tts_primary_with_a_wrong_key_is_not_asked_again_this_session() -> None:
    primary, fallback = FakeTTSService(fail="raise", retryable=False), FakeTTSService()
    tts = FallbackTTSService(primary=primary, fallback=fallback)
    down, _ = await _speak(tts, "One.", "Two.", "Three.")
    assert primary.texts == ["One."]
    assert fallback.texts == ["One.", "Two.", "Three."]
    assert [m.retryable for m in fallback_metrics(down)] == [False]


async def test_tts_retryable_failure_tries_the_primary_on_the_next_sentence() -> None:
    primary, fallback = FakeTTSService(fail="raise", retryable=True), FakeTTSService()
    tts = FallbackTTSService(primary=primary, fallback=fallback)
    await _speak(tts, "One.", "Two.")
    assert primary.texts == ["One.", "Two."] and fallback.texts == ["One.", "Two."]


def test_retryable_is_read_through_causes() -> None:
    assert not is_retryable(ProviderError("401", retryable=False))
    wrapped = RuntimeError("wrapped")
    wrapped.__cause__ = ProviderError("401", retryable=False)
    assert not is_retryable(wrapped)
    assert is_retryable(RuntimeError("unknown"))  # unknown failures may pass


async def test_tts_breaker_keeps_every_session_on_the_fallback_for_the_cool_down() -> None:
    breaker = CircuitBreaker("tts", "fake", cooldown_secs=60)
    primary, fallback = FakeTTSService(fail="raise", retryable=True), FakeTTSService()
    tts = FallbackTTSService(primary=primary, fallback=fallback, breaker=breaker)
    await _speak(tts, "One.", "Two.")
    assert primary.texts == ["One."] and fallback.texts == ["One.", "Two."]
    # Another session during the outage: its primary is not asked either.
    healthy, fallback2 = FakeTTSService(), FakeTTSService()
    tts2 = FallbackTTSService(primary=healthy, fallback=fallback2, breaker=breaker)
    await _speak(tts2, "Three.")
    assert healthy.texts == [] and fallback2.texts == ["Three."]
