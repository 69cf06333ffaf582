"""LLM benchmark: time to first token and decoding speed of each local backend on this host.

    .venv/bin/python -m tests.benchmark.bench_llm --output bench-results/llm.json

Runs the bundled SmolLM2-135M-Instruct through llama.cpp (Q4_1 GGUF) and through
transformers (the same GGUF dequantised to float32 on CPU; fp16/bf16 with --device cuda),
each over the same spoken-style questions through the LLM stage a session uses.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path
from typing import Any

from voicebot.config import Settings
from voicebot.models import SharedModels
from voicebot.tools.bench import report_header, write_report
from voicebot.tools.chat import chat

QUESTIONS = (
    "What is the capital of France?",
    "How many days are there in a week?",
    "Why is the sky blue?",
    "Can you tell me how to boil an egg?",
    "What should I wear when it is raining?",
)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for provider in ("llama_cpp", "transformers"):
        settings = Settings(
            llm={
                "provider": provider,
                "temperature": 0.0,
                "max_tokens": 64,
                "transformers": {"device": args.device},
                "llama_cpp": {"gpu_layers": -1 if args.device == "cuda" else 0},
            }
        )
        start = time.perf_counter()
        models = SharedModels.load(settings, stages=("llm",))
        load_s = time.perf_counter() - start
        await chat(settings, models, "Hello.")  # warm-up
        runs = []
        for _ in range(args.repeats):
            for question in QUESTIONS:
                reply = await chat(settings, models, question)
                decode_s = (reply.elapsed_ms - (reply.ttft_ms or 0)) / 1000
                runs.append(
                    {
                        "ttft_ms": reply.ttft_ms,
                        "pieces": reply.tokens,
                        "pieces_per_s": (reply.tokens - 1) / decode_s if decode_s > 0 else None,
                    }
                )
        results[provider] = {
            "load_s": round(load_s, 2),
            "ttft_ms_median": round(statistics.median(r["ttft_ms"] for r in runs), 1),
            "pieces_per_s_median": round(
                statistics.median(r["pieces_per_s"] for r in runs if r["pieces_per_s"]), 1
            ),
            "replies": len(runs),
        }
        print(json.dumps({provider: results[provider]}), flush=True)
    return {
        **report_header("llm"),
        "device": args.device,
        "note": "pieces: streamed text chunks; one llama.cpp chunk is one token",
        "backends": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, default=Path("bench-results/llm.json"))
    args = parser.parse_args()
    report = asyncio.run(run(args))
    write_report(args.output, report)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
