#!/usr/bin/env bash
# Build the llama-cpp-python wheel once, portably, into a cache folder named for its
# version and build flags, and print the folder. quick_start.sh and the Dockerfiles use it.
#
# Why: pip builds llama.cpp with -march=native. Such a wheel dies with SIGILL on an older
# CPU, and on Intel CPUs with AMX (Sapphire Rapids and newer: GCP A3/C3, AWS *7i) llama.cpp
# repacks the weights for its AMX backend and segfaults. The flags below target
# x86-64-v3 (AVX2, FMA, F16C, BMI2), which every x86-64 server CPU of the last decade runs.
#
# Usage: deployment/build_llama_cpp.sh PYTHON [cpu|cuda]
#   VOICEBOT_WHEEL_CACHE  where wheels are kept (default ~/.cache/voicebot/wheels)
set -euo pipefail

PYTHON=${1:?usage: build_llama_cpp.sh PYTHON [cpu|cuda]}
VARIANT=${2:-cpu}
VERSION=0.3.36

CPU_FLAGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
CPU_FLAGS+=" -DGGML_AVX512=OFF -DGGML_AVX_VNNI=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
case "$VARIANT" in
    cpu) FLAGS="$CPU_FLAGS" ;;
    # CUDA kernels for every architecture from Turing (T4) to Hopper (H100/H200).
    cuda) FLAGS="$CPU_FLAGS -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=75;80;86;89;90" ;;
    *) echo "unknown variant '$VARIANT': use cpu or cuda" >&2; exit 2 ;;
esac

pyver=$("$PYTHON" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
key=$(printf '%s' "$FLAGS" | sha256sum | cut -c1-12)
cache=${VOICEBOT_WHEEL_CACHE:-$HOME/.cache/voicebot/wheels}
dir="$cache/llama_cpp_python-$VERSION-$VARIANT-$pyver-$key"

if ! ls "$dir"/llama_cpp_python-*.whl >/dev/null 2>&1; then
    echo "==> building llama-cpp-python $VERSION ($VARIANT, portable x86-64-v3, no AMX) into $dir" >&2
    echo "    (once per machine: 5-15 minutes)" >&2
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    CMAKE_ARGS="$FLAGS" CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)} \
        "$PYTHON" -m pip wheel --quiet --no-deps --no-cache-dir --no-binary llama-cpp-python \
        -w "$tmp" "llama-cpp-python==$VERSION" >&2
    mkdir -p "$dir"
    mv "$tmp"/llama_cpp_python-*.whl "$dir"/
    printf '%s\n' "$FLAGS" >"$dir/FLAGS"
fi
echo "$dir"
