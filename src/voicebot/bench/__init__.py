"""The benchmark suite behind `voicebot bench` and tests/benchmark/gpu_benchmark.py.

report (header, machine, schema, memory sampling), speech (known-text speech, WER),
stt, tts, llm, turn (one module per section), plots, compare, suite (runs them).
"""
