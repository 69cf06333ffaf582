"""`voicebot bench suite|stt|tts|llm`: run the chosen sections, write one JSON report and PNGs.

`quick` runs every section at its smallest (CI proves each works and its report
validates); the full run covers every model, precision, length, batch size, provider
and backend this machine has, and records each one it cannot run with the reason.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from voicebot.autotune import Tuned
from voicebot.bench import SECTIONS, llm, stt, tts
from voicebot.bench.plots import write_plots
from voicebot.bench.report import SCHEMA_VERSION, report_header, skipped, validate, write_report
from voicebot.bench.speech import SampleSpeech
from voicebot.bench.turn import turn_section
from voicebot.errors import VoicebotError


@dataclass(frozen=True)
class Plan:
    """What a run measures; None fields take the quick or full defaults."""

    quick: bool = False
    sections: tuple[str, ...] = SECTIONS
    models: tuple[str, ...] | None = None
    compute_types: tuple[str, ...] | None = None
    lengths_s: tuple[float, ...] | None = None
    batch_sizes: tuple[int, ...] | None = None
    tts_providers: tuple[str, ...] | None = None
    llm_backends: tuple[str, ...] | None = None
    replies: int | None = None
    turns: int | None = None
    repeats: int | None = None
    edge: str = "standin"

    def resolved(self, tuned: Tuned) -> Plan:
        whisper = tuned.settings.stt.whisper
        quick = self.quick

        def pick(value: Any, small: Any, full: Any) -> Any:
            return value if value is not None else (small if quick else full)

        return Plan(
            quick=quick,
            sections=self.sections,
            models=pick(self.models, (whisper.model,), stt.MODELS),
            compute_types=pick(self.compute_types, (whisper.compute_type,), stt.COMPUTE_TYPES),
            lengths_s=pick(self.lengths_s, (1, 5), stt.LENGTHS_S),
            batch_sizes=pick(self.batch_sizes, (1, 2), stt.BATCH_SIZES),
            tts_providers=pick(self.tts_providers, ("piper", "edge"), tts.PROVIDERS),
            llm_backends=pick(self.llm_backends, ("llama_cpp",), llm.BACKENDS),
            replies=pick(self.replies, 2, 5),
            turns=pick(self.turns, 2, 10),
            repeats=pick(self.repeats, 1, 3),
            edge=self.edge,
        )


def _autotune_batch(tuned: Tuned) -> dict[str, Any]:
    return {
        "batch_size": tuned.settings.stt.whisper.batch_size,
        "reason": tuned.decisions.get("stt.whisper.batch_size", "set explicitly"),
    }


async def _section(name: str, tuned: Tuned, plan: Plan, speech: SampleSpeech) -> dict[str, Any]:
    settings = tuned.settings
    assert plan.repeats is not None and plan.turns is not None and plan.replies is not None
    if name == "stt":
        return await stt.model_section(
            settings,
            speech,
            models=plan.models or (),
            compute_types=plan.compute_types or (),
            lengths=plan.lengths_s or (),
            repeats=plan.repeats,
        )
    if name == "batch":
        return await stt.batch_section(
            settings,
            speech,
            batch_sizes=plan.batch_sizes or (),
            repeats=plan.repeats,
            autotune=_autotune_batch(tuned),
        )
    if name == "tts":
        from voicebot.providers.stt.whisper import load_engine

        engine = await asyncio.to_thread(load_engine, settings)
        try:
            texts = dict(list(tts.TEXTS.items())[1:]) if plan.quick else tts.TEXTS
            return await tts.tts_section(
                settings,
                engine,
                providers=plan.tts_providers or (),
                texts=texts,
                repeats=plan.repeats,
                edge=plan.edge,
            )
        finally:
            engine.close()
    if name == "llm":
        return await llm.llm_section(
            settings, backends=plan.llm_backends or (), replies=plan.replies
        )
    if name == "turn":
        return await turn_section(settings, plan.turns)
    raise ValueError(f"unknown section {name!r}; known: {', '.join(SECTIONS)}")


async def run_suite(tuned: Tuned, plan: Plan, output: Path, benchmark: str = "suite") -> int:
    """Run `plan`'s sections, write `output/<benchmark>.json` and one PNG per section."""
    plan = plan.resolved(tuned)
    started = time.perf_counter()
    speech = await asyncio.to_thread(SampleSpeech, tuned.settings)
    sections: dict[str, Any] = {}
    for name in plan.sections:
        print(f"== {name}", file=sys.stderr, flush=True)
        try:
            sections[name] = await _section(name, tuned, plan, speech)
        except VoicebotError as e:  # a section that cannot run here says why
            sections[name] = skipped(f"could not run: {e}")
    report = {
        "schema_version": SCHEMA_VERSION,
        **report_header(benchmark),
        "quick": plan.quick,
        "plan": asdict(plan),
        "duration_s": round(time.perf_counter() - started, 1),
        "settings": tuned.settings.redacted(),
        "autotune": tuned.decisions,
        "sections": sections,
    }
    path = output / f"{benchmark}.json"
    await asyncio.to_thread(write_report, path, report)
    plots = await asyncio.to_thread(write_plots, report, output)
    print(json.dumps({"report": str(path), "plots": [str(p) for p in plots]}))
    try:
        problem = validate(report)
    except ImportError:
        print(
            "voicebot: jsonschema is not installed; the report was not validated", file=sys.stderr
        )
        return 0
    if problem:
        raise VoicebotError(f"{path} does not match the report schema: {problem}")
    return 0
