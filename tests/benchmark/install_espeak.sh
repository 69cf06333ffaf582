#!/usr/bin/env bash
# Installs Debian's espeak-ng for the unseen-voice turn benchmarks and their tests
# (voicebot.tools.voice_set) when it is missing; idempotent, fast when present.
set -euo pipefail

if command -v espeak-ng >/dev/null 2>&1; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_espeak.sh: espeak-ng is missing and there is no apt-get; install espeak-ng" >&2
    exit 1
fi
SUDO=""
if [[ "$(id -u)" != 0 ]]; then
    SUDO=sudo
fi
echo "==> installing Debian's espeak-ng for the unseen-voice benchmarks" >&2
$SUDO apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends espeak-ng >&2
