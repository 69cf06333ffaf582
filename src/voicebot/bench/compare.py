"""`voicebot bench compare OLD.json NEW.json`: which figures got slower or faster, by how much."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from voicebot.errors import InputError

# Figures where less is better, and where more is; anything else (sizes, counts) is context.
TIMES = {
    "latency_ms",
    "latency_p50_ms",
    "latency_p90_ms",
    "rtf",
    "load_s",
    "wall_s",
    "ttfb_ms",
    "ttft_ms",
    "leading_silence_ms",
    "turn_latency_ms",
    "stages_median_ms",
}
LOWER_IS_BETTER = TIMES | {"wer", "rss_peak_mib", "vram_peak_mib"}
HIGHER_IS_BETTER = {"audio_s_per_s", "pieces_per_s"}
# Rows in a list are matched by these fields, so reordering or adding rows changes nothing.
IDENTITY = ("model", "compute_type", "device", "target_s", "batch_size", "provider", "backend")
# Per-item detail already summarised elsewhere in the same section.
DETAIL = {"turns", "replies", "unanswered", "machine", "settings"}


def _figures(node: Any, path: tuple[str, ...], out: dict[str, tuple[float, str]]) -> None:
    if isinstance(node, dict):
        if "skipped" in node:
            return
        for key, value in node.items():
            if key not in DETAIL:
                _figures(value, (*path, str(key)), out)
    elif isinstance(node, list):
        for item in node:
            if isinstance(item, dict):
                identity = [str(item[k]) for k in IDENTITY if k in item] or [str(item.get("name"))]
                _figures(item, (*path, f"[{' '.join(identity)}]"), out)
    elif isinstance(node, int | float) and not isinstance(node, bool):
        metric = next((p for p in reversed(path) if p in LOWER_IS_BETTER | HIGHER_IS_BETTER), None)
        if metric is not None:
            out[" ".join(path)] = (float(node), metric)


def figures(report: dict[str, Any]) -> dict[str, tuple[float, str]]:
    """Every comparable figure of a report's sections: path -> (value, metric name)."""
    out: dict[str, tuple[float, str]] = {}
    _figures(report.get("sections", {}), (), out)
    return out


def load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(f"{path} is not a readable JSON report: {e}") from e
    if not isinstance(data, dict) or "sections" not in data:
        raise InputError(f"{path} is not a `voicebot bench suite` report (no sections)")
    return data


def compare(old: dict[str, Any], new: dict[str, Any], threshold: float = 0.1) -> list[str]:
    """Lines saying what changed by more than `threshold` (a fraction), worst first."""
    before, after = figures(old), figures(new)
    changes: list[tuple[bool, float, str]] = []
    for key in sorted(before.keys() & after.keys()):
        (a, metric), (b, _) = before[key], after[key]
        if a == b or (a == 0 and abs(b) < 1e-9):
            continue
        change = (b - a) / abs(a) if a else float("inf")
        if abs(change) < threshold:
            continue
        worse = change > 0 if metric in LOWER_IS_BETTER else change < 0
        word = (
            ("slower" if worse else "faster")
            if metric in TIMES
            else ("worse" if worse else "better")
        )
        line = f"{word:>7}  {key}: {a:g} -> {b:g} ({change:+.0%})"
        changes.append((not worse, -abs(change), line))
    lines = [line for *_, line in sorted(changes)]
    lines += [f"   gone  {key}" for key in sorted(before.keys() - after.keys())]
    lines += [f"    new  {key}" for key in sorted(after.keys() - before.keys())]
    if old.get("machine", {}).get("cpu") != new.get("machine", {}).get("cpu") or old.get(
        "machine", {}
    ).get("gpu") != new.get("machine", {}).get("gpu"):
        lines.insert(0, "note: the two reports come from different machines")
    unchanged = len(before.keys() & after.keys()) - len(changes)
    lines.append(f"{len(changes)} changed by {threshold:.0%} or more, {unchanged} within it")
    return lines
