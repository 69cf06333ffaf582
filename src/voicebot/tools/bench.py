"""Moved to `voicebot.bench` (report, turn); these names stay importable from here."""

from voicebot.bench.report import machine, percentile, report_header, write_report
from voicebot.bench.turn import run_turn_bench, summarise, turn_record

__all__ = [
    "machine",
    "percentile",
    "report_header",
    "run_turn_bench",
    "summarise",
    "turn_record",
    "write_report",
]
