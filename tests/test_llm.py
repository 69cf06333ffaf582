"""The LLM stage: Groq and vLLM through a local OpenAI-compatible server, failover within
the turn, the real llama.cpp and transformers backends, and bounded history."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest
from pipecat.frames.frames import LLMContextFrame, LLMTextFrame
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.tests.utils import run_test

from tests.helpers import free_port, run_voicebot, tweak
from tests.servers.openai_compat import OpenAICompatServer, openai_compat_server
from voicebot.config import Secrets, Settings, TransformersSettings, VLLMSettings
from voicebot.models import SharedModels
from voicebot.processors.history import HistoryLimiter, bounded
from voicebot.processors.reply_limit import ReplyStoppedAtLimitFrame
from voicebot.providers import spec as providers
from voicebot.providers.llm.local import cpu_threads, llm_decode_threads
from voicebot.tools.chat import chat


@pytest.fixture
async def cloud(monkeypatch: pytest.MonkeyPatch) -> Any:
    async with openai_compat_server() as server:
        monkeypatch.setenv("GROQ_BASE_URL", server.root)
        yield server


def with_groq(settings: Settings, **llm: Any) -> Settings:
    keyed = settings.model_copy(
        update={"secrets": Secrets.model_validate({"GROQ_API_KEY": "gsk_test"})}
    )
    return tweak(keyed, llm={"provider": "groq", "first_token_deadline_secs": 1.0, **llm})


async def test_groq_streams_a_reply_from_groq_base_url(
    settings: Settings, models: SharedModels, cloud: OpenAICompatServer
) -> None:
    result = await chat(
        with_groq(settings, max_tokens=150), models, "What is the capital of France?"
    )
    assert result.reply == "Paris is the capital of France." and result.provider == "groq"
    assert result.tokens == 6  # streamed word by word, not in one piece
    (request,) = cloud.requests
    assert request["path"] == "/openai/v1/chat/completions"
    assert request["auth"] == "Bearer gsk_test"
    body = request["body"]
    assert body["stream"] is True and body["max_tokens"] == 150
    assert body["model"] == settings.llm.groq.model
    assert body["messages"][0] == {"role": "system", "content": settings.llm.system_prompt}
    assert body["messages"][-1]["content"] == "What is the capital of France?"


@pytest.mark.parametrize(
    ("mode", "requests"),
    [
        ("rate_limited", 1),  # 429 + retry-after: 50 -> no retry, no waiting
        ("error", 2),  # 500 -> one quick retry, then the fallback
        ("stall", 1),  # no headers within llm.first_token_deadline_secs
        ("keepalive", 1),  # headers and SSE comments, but no word by the deadline
        ("drip", 1),  # the first word comes after the deadline
        ("empty", 1),  # a complete stream without a word
        ("close_before", 1),  # the connection drops before the first word
        ("malformed", 1),  # a broken SSE event
    ],
)
async def test_groq_failure_is_answered_by_the_fallback_in_the_same_turn(
    settings: Settings, models: SharedModels, cloud: OpenAICompatServer, mode: str, requests: int
) -> None:
    cloud.mode = mode
    start = time.monotonic()
    result = await chat(with_groq(settings, fallback="llama_cpp"), models, "Say hello.")
    assert result.provider == "llama_cpp" and result.reply
    assert len(cloud.requests) == requests
    # A client that honoured retry-after would still be waiting (50 s); the fallback's
    # reply itself takes a second or two, more on a busy machine.
    assert time.monotonic() - start < 30


async def test_groq_dropping_mid_reply_ends_the_reply_with_what_was_said(
    settings: Settings, models: SharedModels, cloud: OpenAICompatServer
) -> None:
    cloud.mode = "close_after"
    result = await chat(with_groq(settings, fallback="llama_cpp"), models, "Say hello.")
    assert result.provider == "groq" and result.reply == "Paris is"


async def test_groq_down_without_a_fallback_says_the_apology(
    settings: Settings, models: SharedModels, cloud: OpenAICompatServer
) -> None:
    cloud.mode = "keepalive"
    result = await chat(with_groq(settings, apology="Sorry, not now."), models, "Say hello.")
    assert result.provider == "none" and result.reply == "Sorry, not now."


@pytest.mark.parametrize(
    ("mode", "retryable"),
    [("unauthorized", False), ("rate_limited", True), ("error", True), ("stall", True)],
)
async def test_groq_errors_become_provider_errors_that_say_if_retrying_helps(
    settings: Settings, cloud: OpenAICompatServer, mode: str, retryable: bool
) -> None:
    from voicebot.errors import ProviderError
    from voicebot.providers import spec as providers

    cloud.mode = mode
    groq = with_groq(settings)
    llm = providers.get("llm", "groq").build(groq, None)
    context = LLMContext(messages=[{"role": "user", "content": "Hi"}])
    with pytest.raises(ProviderError) as failure:
        await llm.get_chat_completions(context)  # type: ignore[attr-defined]
    assert failure.value.retryable is retryable, failure.value


async def test_connection_refused_goes_to_the_fallback(
    settings: Settings, models: SharedModels, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GROQ_BASE_URL", f"http://127.0.0.1:{free_port()}")
    result = await chat(with_groq(settings, fallback="llama_cpp"), models, "Say hello.")
    assert result.provider == "llama_cpp" and result.reply


async def test_primary_rests_after_a_failure_then_is_tried_again(
    settings: Settings, models: SharedModels, cloud: OpenAICompatServer
) -> None:
    from pipecat.pipeline.worker import PipelineParams

    from voicebot.providers.llm.failover import FailoverLLMService
    from voicebot.providers.llm.stage import build_llm

    llm = build_llm(with_groq(settings, fallback="llama_cpp", cooldown_secs=60), models)
    assert isinstance(llm, FailoverLLMService)
    cloud.mode = "error"

    def ask(text: str) -> LLMContextFrame:
        return LLMContextFrame(LLMContext(messages=[{"role": "user", "content": text}]))

    await run_test(llm, frames_to_send=[ask("One?"), ask("Two?")], pipeline_params=PipelineParams())
    assert len(cloud.requests) == 2  # the first turn (with its quick retry) only
    assert llm.failovers == 1 and llm.answered_by is llm.providers[1]

    llm2 = build_llm(with_groq(settings, fallback="llama_cpp", cooldown_secs=0), models)
    cloud.mode = "normal"
    down, _ = await run_test(llm2, frames_to_send=[ask("Three?")])
    assert "".join(f.text for f in down if isinstance(f, LLMTextFrame)) == cloud.reply


@pytest.mark.slow
async def test_vllm_through_its_openai_server(
    settings: Settings, models: SharedModels, cloud: OpenAICompatServer
) -> None:
    vllm = tweak(
        settings,
        llm={
            "provider": "vllm",
            "vllm": VLLMSettings(base_url=f"{cloud.root}/v1", model="Qwen/Qwen2.5-7B-Instruct"),
        },
    )
    result = await chat(vllm, models, "Hi")
    assert result.reply == cloud.reply and result.provider == "vllm"
    assert cloud.requests[0]["path"] == "/v1/chat/completions"
    assert cloud.requests[0]["body"]["model"] == "Qwen/Qwen2.5-7B-Instruct"


@pytest.fixture(scope="module")
def transformers_llm(settings: Settings) -> SharedModels:
    return SharedModels.load(
        tweak(
            settings,
            llm={"provider": "transformers", "transformers": TransformersSettings(device="cpu")},
        ),
        stages=("llm",),
    )


async def test_transformers_backend_streams_a_real_reply(
    settings: Settings, transformers_llm: SharedModels
) -> None:
    config = tweak(settings, llm={"provider": "transformers", "temperature": 0.0})
    result = await chat(config, transformers_llm, "What is the capital of France?")
    assert result.provider == "transformers" and "paris" in result.reply.lower()
    assert result.tokens > 1 and result.ttft_ms is not None


@pytest.mark.parametrize(("max_tokens", "at_limit"), [(3, True), (80, False)])
async def test_transformers_marks_a_reply_stopped_at_its_limit(
    settings: Settings, transformers_llm: SharedModels, max_tokens: int, at_limit: bool
) -> None:
    config = tweak(
        settings, llm={"provider": "transformers", "temperature": 0.0, "max_tokens": max_tokens}
    )
    spec = providers.chosen(config, "llm")[0]
    llm = spec.build(config, transformers_llm.get(spec))
    context = LLMContext(messages=[{"role": "user", "content": "What is the capital of France?"}])
    down, _ = await run_test(llm, frames_to_send=[LLMContextFrame(context)])
    words = "".join(f.text for f in down if isinstance(f, LLMTextFrame))
    cut = [f.text for f in down if isinstance(f, ReplyStoppedAtLimitFrame)]
    assert cut == ([words] if at_limit else []), words


async def test_llama_cpp_backend_real_reply(settings: Settings, models: SharedModels) -> None:
    result = await chat(
        tweak(settings, llm={"temperature": 0.0}), models, "What is the capital of France?"
    )
    assert result.provider == "llama_cpp" and result.reply and result.tokens > 1
    # Every core but one writes the reply; every core reads the prompt.
    llama = models.model("llm", "llama_cpp").llama
    assert llama.n_threads == llm_decode_threads() and llama.n_threads_batch == cpu_threads()


def test_the_reply_is_written_with_every_core_but_one(monkeypatch: pytest.MonkeyPatch) -> None:
    for cores, threads in ((1, 1), (2, 1), (4, 3), (16, 15)):
        monkeypatch.setattr(os, "cpu_count", lambda cores=cores: cores)
        assert (llm_decode_threads(), cpu_threads()) == (threads, cores)
    assert llm_decode_threads(2) == 2  # llm.llama_cpp.n_threads, when set


def test_history_is_bounded_by_turns_and_tokens() -> None:
    def exchange(n: int, size: int = 10) -> list[dict[str, str]]:
        return [
            {"role": "user", "content": f"question {n} " + "x" * size},
            {"role": "assistant", "content": f"answer {n} " + "y" * size},
        ]

    system = [{"role": "system", "content": "Be brief."}]
    history = (
        system
        + [m for n in range(10) for m in exchange(n)]
        + [{"role": "user", "content": "latest"}]
    )
    kept = bounded(history, max_turns=3, max_tokens=10_000)
    assert kept[0] == system[0]
    assert [m["content"].split(" ")[0:2] for m in kept[1:] if m["role"] == "user"] == [
        ["question", "8"],
        ["question", "9"],
        ["latest"],
    ]

    long = (
        system
        + [m for n in range(4) for m in exchange(n, size=400)]
        + [{"role": "user", "content": "latest"}]
    )
    kept = bounded(long, max_turns=100, max_tokens=250)  # ~1000 characters
    assert kept[0] == system[0] and kept[-1]["content"] == "latest"
    assert kept[1]["role"] == "user"  # never starts half-way through an exchange
    assert sum(len(m["content"]) for m in kept) <= 1000
    assert (
        bounded([*system, {"role": "user", "content": "z" * 5000}], 1, 64)[-1]["content"]
        == "z" * 5000
    )


async def test_history_limiter_trims_the_context_in_place() -> None:
    context = LLMContext(messages=[{"role": "user", "content": f"q{i}"} for i in range(20)])
    down, _ = await run_test(
        HistoryLimiter(max_turns=5, max_tokens=1000), frames_to_send=[LLMContextFrame(context)]
    )
    assert [m["content"] for m in context.messages] == ["q15", "q16", "q17", "q18", "q19"]
    assert any(isinstance(f, LLMContextFrame) for f in down)


@pytest.mark.slow
def test_chat_cli(cloud_env: dict[str, str]) -> None:
    done = run_voicebot("chat", "Where is Paris?", "--json", env=cloud_env, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert set(report) == {"reply", "provider", "ttft_ms", "tokens", "elapsed_ms"}
    assert report["provider"] == "llama_cpp"  # groq is down: the fallback answered
    assert report["reply"] and report["tokens"] >= 1 and report["ttft_ms"] > 0


@pytest.fixture
def cloud_env() -> dict[str, str]:
    return {
        "VOICEBOT_LLM__PROVIDER": "groq",
        "VOICEBOT_LLM__FALLBACK": "llama_cpp",
        "GROQ_API_KEY": "gsk_test",
        "GROQ_BASE_URL": f"http://127.0.0.1:{free_port()}",  # nothing listens: refused
    }


@pytest.mark.slow
def test_groq_without_a_key_is_a_start_up_error() -> None:
    done = run_voicebot(
        "chat", "Hi", env={"VOICEBOT_LLM__PROVIDER": "groq", "GROQ_API_KEY": ""}, timeout=60
    )
    assert done.returncode == 2 and "GROQ_API_KEY" in done.stderr


@pytest.mark.slow
def test_history_budget_must_fit_the_context_window() -> None:
    done = run_voicebot("chat", "Hi", env={"VOICEBOT_LLM__LLAMA_CPP__N_CTX": "1024"}, timeout=60)
    assert done.returncode == 2 and "exceed llm.llama_cpp.n_ctx (1024)" in done.stderr
