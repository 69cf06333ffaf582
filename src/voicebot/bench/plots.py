"""One PNG per section of a suite report, plus a per-turn timeline (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: never a display, safe in threads and on servers

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

TIMELINE = (
    ("vad_stop", "VAD stop"),
    ("stt", "STT transcript"),
    ("llm_first_token", "LLM first token"),
    ("first_clause", "first clause to TTS"),
    ("tts_first_audio", "TTS first audio"),
)


def _measured(section: dict[str, Any] | None) -> list[dict[str, Any]]:
    return [r for r in (section or {}).get("rows", []) if "skipped" not in r]


def _save(figure: Figure, path: Path, title: str) -> Path:
    figure.suptitle(title, fontsize=12)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _bars(axis: Any, labels: list[str], values: list[float | None], title: str) -> None:
    heights = [v if v is not None else 0.0 for v in values]
    bars = axis.bar(range(len(labels)), heights, color="tab:blue")
    texts = ["n/a" if v is None else f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}" for v in values]
    axis.bar_label(bars, labels=texts, size=8)
    axis.set_xticks(range(len(labels)), labels, rotation=20, ha="right", fontsize=8)
    axis.set_title(title, fontsize=10)
    # A row of zeros (a perfect WER) still gets a sensible axis from zero up.
    axis.set_ylim(0, max(heights, default=0.0) * 1.2 or 1.0)


def stt_plot(section: dict[str, Any], path: Path, machine: str) -> Path:
    rows = _measured(section)
    figure, (latency, rtf, wer) = plt.subplots(1, 3, figsize=(14, 4.5))
    for row in rows:
        label = f"{row['model']} {row['compute_type']}"
        lengths = [r["audio_s"] for r in row["lengths"]]
        latency.plot(lengths, [r["latency_ms"] for r in row["lengths"]], "o-", label=label)
        rtf.plot(lengths, [r["rtf"] for r in row["lengths"]], "o-", label=label)
    latency.set(xlabel="utterance (s)", ylabel="latency (ms)", title="latency by length")
    rtf.set(xlabel="utterance (s)", ylabel="RTF (lower is faster)", title="real-time factor")
    for axis in (latency, rtf):
        axis.set_ylim(bottom=0)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    labels = [f"{r['model']}\n{r['compute_type']}" for r in rows]
    _bars(wer, labels, [r["wer"] for r in rows], "word error rate (median over lengths)")
    return _save(figure, path, f"Whisper models on {section['device']} ({machine})")


def batch_plot(section: dict[str, Any], path: Path, machine: str) -> Path:
    rows = section["rows"]
    sizes = [r["batch_size"] for r in rows]
    figure, (throughput, latency) = plt.subplots(1, 2, figsize=(11, 4.5))
    throughput.plot(sizes, [r["audio_s_per_s"] for r in rows], "o-")
    throughput.set(xlabel="concurrent utterances", ylabel="audio s per s", title="throughput")
    latency.plot(sizes, [r["latency_p50_ms"] for r in rows], "o-", label="p50")
    latency.plot(sizes, [r["latency_p90_ms"] for r in rows], "s--", label="p90")
    latency.set(xlabel="concurrent utterances", ylabel="latency (ms)", title="latency")
    latency.legend(fontsize=8)
    pick = section["autotune"]["batch_size"]
    for axis in (throughput, latency):
        axis.set_xticks(sizes)
        axis.grid(alpha=0.3)
        axis.axvline(pick, color="tab:red", ls=":", label=f"auto-tune picks {pick}")
    throughput.legend(fontsize=8)
    name = f"{section['model']} {section['compute_type']} on {section['device']}"
    return _save(figure, path, f"Batch-size sweep: {name} ({machine})")


def tts_plot(section: dict[str, Any], path: Path, machine: str) -> Path:
    rows = _measured(section)
    labels = [r["provider"] for r in rows]
    figure, axes = plt.subplots(1, 4, figsize=(15, 4.2))
    for axis, key, title in zip(
        axes,
        ("ttfb_ms", "rtf", "leading_silence_ms", "wer"),
        ("time to first audio (ms)", "RTF", "leading silence (ms)", "WER (Whisper round trip)"),
        strict=True,
    ):
        _bars(axis, labels, [r[key] for r in rows], title)
    return _save(figure, path, f"TTS providers, median over texts ({machine})")


def llm_plot(section: dict[str, Any], path: Path, machine: str) -> Path:
    rows = _measured(section)
    labels = [r["backend"] for r in rows]
    figure, (ttft, speed) = plt.subplots(1, 2, figsize=(10, 4.2))
    _bars(ttft, labels, [r["ttft_ms"] for r in rows], "time to first token (ms)")
    _bars(speed, labels, [r["pieces_per_s"] for r in rows], "streamed pieces per s")
    return _save(figure, path, f"LLM backends ({machine})")


def turn_plot(section: dict[str, Any], path: Path, machine: str) -> Path:
    turns = section["turns"]
    stages = (
        ("stt_ms", "STT"),
        ("llm_ttft_ms", "LLM first token"),
        ("tts_ttfb_ms", "TTS first audio"),
    )
    figure, axis = plt.subplots(figsize=(max(6.0, 0.9 * len(turns) + 3), 4.5))
    names = [f"{i + 1}. {t['name']}" for i, t in enumerate(turns)]
    bottom = [0.0] * len(turns)
    for key, label in stages:
        values = [t["stages"].get(key, 0.0) for t in turns]
        axis.bar(names, values, bottom=bottom, label=label)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    axis.plot(names, [t["turn_latency_ms"] or 0 for t in turns], "kD", label="turn latency")
    axis.set(ylabel="ms", title="stage times (server metrics) and turn latency (client)")
    axis.tick_params(axis="x", labelrotation=20, labelsize=8)
    axis.legend(fontsize=8)
    axis.grid(axis="y", alpha=0.3)
    return _save(figure, path, f"Turns through /ws ({machine})")


def timeline_plot(section: dict[str, Any], path: Path, machine: str) -> Path:
    turns = section["turns"]
    figure, axis = plt.subplots(figsize=(11, 1.0 + 0.6 * max(2, len(turns))))
    markers = "o^sDv"
    for index, turn in enumerate(turns):
        times = turn["timeline_ms"]
        seen = [times[k] for k, _ in TIMELINE if times.get(k) is not None]
        if seen:
            axis.plot([0, max(seen)], [index, index], color="0.7", zorder=1)
        for (key, label), marker in zip(TIMELINE, markers, strict=True):
            if times.get(key) is not None:
                axis.scatter(
                    times[key],
                    index,
                    marker=marker,
                    s=45,
                    zorder=2,
                    color=f"C{TIMELINE.index((key, label))}",
                    label=label if index == 0 else None,
                )
    axis.axvline(0, color="k", lw=1)
    axis.set_yticks(range(len(turns)), [f"{i + 1}. {t['name']}" for i, t in enumerate(turns)])
    axis.invert_yaxis()
    axis.set(xlabel="ms after the last voiced sample was sent (client clock)")
    axis.grid(axis="x", alpha=0.3)
    axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(figure, path, f"Turn timeline ({machine})")


PLOTS = {
    "stt": stt_plot,
    "batch": batch_plot,
    "tts": tts_plot,
    "llm": llm_plot,
    "turn": turn_plot,
}


def write_plots(report: dict[str, Any], folder: Path) -> list[Path]:
    """Every section's PNG (and the turn timeline) into `folder`; returns the files."""
    folder.mkdir(parents=True, exist_ok=True)
    cpu = report["machine"]["cpu"]
    gpu = report["machine"]["gpu"]
    where = (
        gpu["gpus"][0]["name"]
        if gpu and gpu["gpus"]
        else f"{cpu}, {report['machine']['cpu_count']} CPUs"
    )
    written = []
    for name, section in report["sections"].items():
        if "skipped" in section or name not in PLOTS:
            continue
        written.append(PLOTS[name](section, folder / f"{name}.png", where))
        if name == "turn":
            written.append(timeline_plot(section, folder / "timeline.png", where))
    return written
