"""LLM section: time to first token and decoding speed per backend, through the LLM stage.

Local backends (llama.cpp, transformers) run the configured or bundled model; cloud
backends run live only when their key is set (Groq: GROQ_API_KEY), else their row says so.
"""

from __future__ import annotations

import json
import time
from typing import Any

from voicebot.bench.report import MemorySampler, median, skipped, variant
from voicebot.config import Settings
from voicebot.errors import VoicebotError
from voicebot.models import SharedModels
from voicebot.providers import spec as providers
from voicebot.tools.chat import chat
from voicebot.tools.samples import QUESTIONS

BACKENDS = ("llama_cpp", "transformers", "groq")


def _why_not(settings: Settings, backend: str) -> str | None:
    if backend == "groq" and settings.secrets.groq_api_key is None:
        return "GROQ_API_KEY is not set (live service only)"
    try:
        providers.check(settings, stages=("llm",))
    except VoicebotError as e:
        return str(e)
    return None


async def _measure(settings: Settings, replies: int) -> dict[str, Any]:
    start = time.perf_counter()
    models = SharedModels.load(settings, stages=("llm",))
    load_s = time.perf_counter() - start
    await chat(settings, models, "Hello.")  # warm-up
    runs: list[dict[str, Any]] = []
    for i in range(replies):
        reply = await chat(settings, models, QUESTIONS[i % len(QUESTIONS)].text)
        decode_s = (reply.elapsed_ms - (reply.ttft_ms or 0)) / 1000
        runs.append(
            {
                "question": QUESTIONS[i % len(QUESTIONS)].text,
                "provider": reply.provider,
                "ttft_ms": reply.ttft_ms,
                "pieces": reply.tokens,
                "pieces_per_s": round((reply.tokens - 1) / decode_s, 1) if decode_s > 0 else None,
                "reply": reply.reply,
            }
        )
    return {
        "model": providers.chosen(settings, "llm")[0].describe(settings),
        "load_s": round(load_s, 2),
        "ttft_ms": median([r["ttft_ms"] for r in runs if r["ttft_ms"] is not None]),
        "pieces_per_s": median([r["pieces_per_s"] for r in runs if r["pieces_per_s"]]),
        "replies": runs,
    }


async def llm_section(
    settings: Settings, *, backends: tuple[str, ...], replies: int
) -> dict[str, Any]:
    """One row per backend: TTFT and streamed pieces per second over `replies` questions."""
    rows: list[dict[str, Any]] = []
    for backend in backends:
        chosen = variant(
            settings, {"llm": {"provider": backend, "fallback": None, "temperature": 0.0}}
        )
        reason = _why_not(chosen, backend)
        if reason:
            rows.append(skipped(reason, backend=backend))
            continue
        try:
            with MemorySampler() as memory:
                row = await _measure(chosen, replies)
        except (VoicebotError, ImportError, OSError) as e:
            rows.append(skipped(f"could not run: {e}", backend=backend))
            continue
        rows.append({"backend": backend, **row, "memory": memory.summary()})
        print(json.dumps({"llm": {k: v for k, v in rows[-1].items() if k != "replies"}}))
    return {
        "note": "pieces: streamed text chunks; one llama.cpp chunk is one token",
        "rows": rows,
    }
