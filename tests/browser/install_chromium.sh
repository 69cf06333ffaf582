#!/usr/bin/env bash
# Installs Debian's chromium for the browser tests when it is missing (idempotent, fast when
# present). Playwright drives this browser through executable_path: its own browser
# downloads are not reachable offline, so `playwright install` is never used.
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_chromium.sh: chromium is missing and there is no apt-get; install Chromium" \
        "and set VOICEBOT_CHROMIUM to its path" >&2
    exit 1
fi
SUDO=""
if [[ "$(id -u)" != 0 ]]; then
    SUDO=sudo
fi
echo "==> installing Debian's chromium for the browser tests" >&2
$SUDO apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    chromium fonts-liberation >&2
