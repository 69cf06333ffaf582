"""`voicebot bench sentence-ends`: how well the LLM tells finished words from a pause.

The turn-end floor is shorter for words the LLM judges to end a sentence
(turns/sentence_end.py, `turn.sentence_end_probability`), and shorter still for words it
is sure of (`turn.sure_sentence_end_probability`). The thresholds were chosen on
these sentences, written for this check and kept apart from the benchmark's voice set
(tools/voice_set.py): finished requests and questions, and the same kind of words cut
where people pause. The report gives every probability, how many of each kind reach the
thresholds, and the time one judgement takes.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

from voicebot.bench.report import report_header, write_report
from voicebot.config import Settings

FINISHED = (
    "What is the weather like today?",
    "Turn off the lights in the bedroom.",
    "I had pasta for dinner.",
    "Can you tell me a joke?",
    "How far is the moon from the earth?",
    "My favourite colour is green.",
    "Please call my mother.",
    "Where did I leave my keys?",
    "Set a timer for ten minutes.",
    "The train was late again this morning.",
    "Who wrote Pride and Prejudice?",
    "I want to learn how to play the guitar.",
    "Is it going to rain tomorrow?",
    "Thank you very much.",
    "Add milk to my shopping list.",
    "What's the capital of Australia?",
    "We are going to the beach on Saturday.",
    "Tell me about the Roman Empire.",
    "How do I make pancakes?",
    "I'm feeling a bit tired today.",
    "Where can I buy fresh bread?",
    "Book me a taxi to the airport.",
    "My brother lives in Canada.",
    "What does a koala eat?",
    "Read me the latest news.",
    "I lost my phone yesterday.",
    "Is the library open late tonight?",
    "Find me a recipe for lentil soup.",
    "It was a lovely concert.",
    "Why is the sky blue?",
)

# As Whisper writes a pause: the words so far, closed with a full stop.
GOING_ON = tuple(
    f"{words}."
    for words in (
        "What is the weather",
        "Turn off the lights in",
        "I had pasta and",
        "Can you tell me",
        "How far is the",
        "My favourite colour is",
        "Please call my",
        "Where did I leave",
        "Set a timer for",
        "The train was late again because",
        "Who wrote the book that",
        "I want to learn how to",
        "Is it going to",
        "Add milk and",
        "What's the capital city of",
        "We are going to the beach with",
        "Tell me about the",
        "How do I make",
        "I'm feeling a bit",
        "Could you find me a restaurant that",
        "Where can I buy",
        "Book me a taxi to the",
        "My brother lives",
        "What does a koala",
        "Read me the latest",
        "I lost my phone when",
        "Is the library open",
        "Find me a recipe",
        "It was a lovely",
        "Why is the sky",
        "Can you ask my neighbour",
        "Remind me to water",
        "Tell my boss that the",
        "Show me pictures of",
        "What time does the bakery",
        "How many people live",
        "I would like to order",
        "Please turn down",
        "Could you check whether",
        "When does my flight",
        "Send an email to my",
        "What did the doctor",
        "Help me plan",
        "I'm looking for",
        "Give me directions",
    )
)


def run_sentence_ends_bench(settings: Settings, output: Path) -> dict[str, Any]:
    """Judge every sentence with the configured llama.cpp model; write the report."""
    from voicebot.models import SharedModels

    models = SharedModels.load(settings, stages=("llm",))
    model = models.model("llm", "llama_cpp")
    threshold = settings.turn.sentence_end_probability
    sure = settings.turn.sure_sentence_end_probability
    rows: list[dict[str, Any]] = []
    took_ms: list[float] = []
    for kind, texts in (("finished", FINISHED), ("going_on", GOING_ON)):
        for text in texts:
            messages = [
                {"role": "system", "content": settings.llm.system_prompt},
                {"role": "user", "content": text},
            ]
            with model.lock:
                # A fresh cache: each judgement reads the whole prompt, as a first turn does.
                model.llama.reset()
                start = time.perf_counter()
                probability = model.sentence_end_probability(messages)
                took_ms.append((time.perf_counter() - start) * 1000)
            rows.append({"kind": kind, "text": text, "probability": probability})

    def of(kind: str) -> list[float]:
        return [
            r["probability"] for r in rows if r["kind"] == kind and r["probability"] is not None
        ]

    finished, going_on = of("finished"), of("going_on")
    report = {
        **report_header("sentence-ends"),
        "model": model.name,
        "threshold": threshold,
        "sure_threshold": sure,
        "summary": {
            "finished": len(finished),
            "finished_at_threshold": sum(p >= threshold for p in finished),
            "finished_lowest": min(finished, default=None),
            "finished_at_sure_threshold": sum(p >= sure for p in finished),
            "going_on": len(going_on),
            "going_on_at_threshold": sum(p >= threshold for p in going_on),
            "going_on_highest": max(going_on, default=None),
            "going_on_at_sure_threshold": sum(p >= sure for p in going_on),
            "judgement_ms_median": round(statistics.median(took_ms), 1),
        },
        "sentences": rows,
    }
    write_report(output, report)
    print(json.dumps(report["summary"], indent=2))
    return report
