"""The benchmark suite under the name users know: the same code as `voicebot bench suite`.

    .venv/bin/python tests/benchmark/gpu_benchmark.py --quick --output bench-results/quick
    .venv/bin/python tests/benchmark/gpu_benchmark.py --device cuda --models-dir /models/whisper \\
        --output bench-results/suite-gpu

Every option of `voicebot bench suite --help` works here; see README_PIPECAT.md.
"""

from __future__ import annotations

import sys

from voicebot.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["bench", "suite", *sys.argv[1:]]))
