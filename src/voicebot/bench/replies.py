"""`voicebot bench replies`: what the LLM says, at each repeat penalty.

A small model sampled at the voice temperature can fall into a loop ("a leaf falls, a
leaf falls, ...") and write on to `llm.max_tokens`; the listener then hears the same
sentence again and again. This asks the configured in-process LLM, through the LLM
stage as a session does, every finished request and question of `voicebot bench
sentence-ends` and twenty open requests (`OPEN`), all kept apart from the benchmark's
voice set, `rounds` times at each penalty. It counts the replies that say a sentence
twice, the replies stopped at the token limit, and their length.
"""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path
from typing import Any

from voicebot.bench.report import report_header, variant, write_report
from voicebot.bench.sentence_ends import FINISHED
from voicebot.config import Settings
from voicebot.errors import InputError
from voicebot.providers import spec as providers

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")

# Requests that invite a longer answer, where loops begin (written for this check, apart
# from the voice set and from the sentence-ends sentences).
OPEN = (
    "What should I cook for dinner tonight?",
    "Can you explain how rainbows form?",
    "Give me a tip for learning French.",
    "What is a good name for a cat?",
    "Tell me a fun fact about octopuses.",
    "How do I keep my plants alive?",
    "My flight was delayed by three hours.",
    "What's the difference between a lake and a pond?",
    "Suggest a weekend activity for a family.",
    "Why is the sea salty?",
    "Help me plan a birthday party.",
    "I just finished a marathon!",
    "Recommend a board game for four players.",
    "How can I sleep better?",
    "Write a short poem about autumn.",
    "What does a bee do all day?",
    "Tell me a joke about computers.",
    "Describe your perfect holiday.",
    "What makes a good friend?",
    "Explain how a bicycle works.",
)
PROMPTS = FINISHED + OPEN


def repeats_a_sentence(reply: str) -> bool:
    """Whether `reply` says one of its sentences (or lines) twice."""
    sentences = [
        " ".join(re.findall(r"[a-z0-9']+", part.lower()))
        for line in reply.splitlines()
        for part in _SENTENCE_END.split(line)
    ]
    said = [s for s in sentences if s]
    return len(said) > len(set(said))


async def run_replies_bench(
    settings: Settings,
    output: Path,
    *,
    penalties: list[float],
    rounds: int = 2,
    prompts: int | None = None,
) -> dict[str, Any]:
    """Ask the configured LLM every prompt `rounds` times per penalty; write the report."""
    from voicebot.models import SharedModels
    from voicebot.tools.chat import chat

    if settings.llm.provider not in ("llama_cpp", "transformers"):
        raise InputError(
            f"llm.repeat_penalty applies to llama_cpp and transformers, not {settings.llm.provider}"
        )
    if not penalties or any(not 1.0 <= p <= 2.0 for p in penalties) or rounds < 1:
        raise InputError("give repeat penalties between 1.0 and 2.0 and at least one round")
    models = SharedModels.load(settings, stages=("llm",))
    limit = settings.llm.max_tokens
    asked = PROMPTS[:prompts] if prompts else PROMPTS
    rows: list[dict[str, Any]] = []
    for penalty in penalties:
        chosen = variant(settings, {"llm": {"repeat_penalty": penalty, "fallback": None}})
        replies: list[dict[str, Any]] = []
        for _ in range(rounds):
            for prompt in asked:
                reply = await chat(chosen, models, prompt)
                replies.append(
                    {
                        "prompt": prompt,
                        "reply": reply.reply,
                        "pieces": reply.tokens,
                        "at_limit": reply.tokens >= limit,
                        "repeats": repeats_a_sentence(reply.reply),
                    }
                )
        rows.append(
            {
                "repeat_penalty": penalty,
                "replies": len(replies),
                "repeating": sum(r["repeats"] for r in replies),
                "at_limit": sum(r["at_limit"] for r in replies),
                "pieces_median": statistics.median(int(r["pieces"]) for r in replies),
                "per_reply": replies,
            }
        )
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "per_reply"}))
    report = {
        **report_header("replies"),
        "model": providers.chosen(settings, "llm")[0].describe(settings),
        "max_tokens": limit,
        "temperature": settings.llm.temperature,
        "rounds": rounds,
        "rows": rows,
    }
    write_report(output, report)
    return report
