#!/bin/sh
# Container entry point: `voicebot` with the port the platform gives. An explicit
# VOICEBOT_SERVER__PORT wins; otherwise Cloud Run's (and Knative's) PORT; otherwise 7860.
# `exec` makes the server PID 1's process, so SIGTERM from `docker stop` reaches it.
set -eu
if [ -z "${VOICEBOT_SERVER__PORT:-}" ] && [ -n "${PORT:-}" ]; then
    VOICEBOT_SERVER__PORT=$PORT
    export VOICEBOT_SERVER__PORT
fi
exec voicebot "$@"
