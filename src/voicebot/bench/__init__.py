"""The benchmark suite behind `voicebot bench` and tests/benchmark/gpu_benchmark.py.

report (header, machine, schema, memory sampling), speech (known-text speech, WER),
stt, tts, llm, turn (one module per section), plots, compare, suite (runs them).
Importing this package needs nothing beyond the base install (the CLI lists the sections);
the sections themselves need the `bench` extra (matplotlib, jiwer, jsonschema).
"""

SECTIONS = ("stt", "batch", "tts", "llm", "turn")
