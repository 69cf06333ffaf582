#!/bin/sh
# Container entry point: `voicebot` with the port the platform gives. An explicit
# VOICEBOT_SERVER__PORT wins; otherwise Cloud Run's (and Knative's) PORT; otherwise 7860.
# `exec` makes the server PID 1's process, so SIGTERM from `docker stop` reaches it.
#
# The image listens on every interface, which the server refuses without API keys. With
# no VOICEBOT_API_KEYS (and no --insecure-no-auth) a key is generated, kept in
# $VOICEBOT_CACHE_DIR/api_key (readable only by the server's user, reused on restart), and
# a ready-to-use page link is printed once the models are warm. The key is never printed.
set -eu
if [ -z "${VOICEBOT_SERVER__PORT:-}" ] && [ -n "${PORT:-}" ]; then
    VOICEBOT_SERVER__PORT=$PORT
    export VOICEBOT_SERVER__PORT
fi

case " $* " in
    *" --insecure-no-auth "*) insecure=1 ;;
    *) insecure=0 ;;
esac
if [ "${1:-serve}" = "serve" ] && [ -z "${VOICEBOT_API_KEYS:-}" ] && [ "$insecure" = 0 ]; then
    key_file=${VOICEBOT_CACHE_DIR:-/cache}/api_key
    if [ -s "$key_file" ]; then
        VOICEBOT_API_KEYS=$(cat "$key_file")
    else
        VOICEBOT_API_KEYS=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
        (umask 077 && printf '%s\n' "$VOICEBOT_API_KEYS" >"$key_file") 2>/dev/null \
            || key_file=""
    fi
    export VOICEBOT_API_KEYS
    echo "voicebot: no VOICEBOT_API_KEYS set: generated an API key${key_file:+ (in $key_file)}" >&2
    echo "voicebot: backends get sessions with: curl -X POST -H \"Authorization: Bearer \$KEY\" -d '{\"transport\":\"webrtc\"}' URL/start" >&2
    if command -v python >/dev/null 2>&1 && [ -f /opt/voicebot/session_url.py ]; then
        python /opt/voicebot/session_url.py &
    fi
fi
exec voicebot "$@"
