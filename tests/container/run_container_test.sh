#!/usr/bin/env bash
# Build Dockerfile.gpu's CPU variant with podman and run it for real: /health, a spoken
# /ws turn answered with audio, non-root, the image's HEALTHCHECK, a clean SIGTERM stop.
#
# No Docker daemon and no registry are needed: podman comes from Debian's packages (run as
# root) and the base image is made with debootstrap from the mirror apt already uses.
# Everything is cached: the base image, podman's layer cache and the llama.cpp wheel.
#
# Usage: tests/container/run_container_test.sh [pytest args]
#   VOICEBOT_CONTAINER_TEST=skip   skip it (prints why)
#   PYTHON                         the host venv's python (default .venv/bin/python)
set -euo pipefail
cd "$(dirname "$0")/../.."
here=tests/container

say() { echo "==> container test: $*"; }

if [[ "${VOICEBOT_CONTAINER_TEST:-}" == "skip" ]]; then
    say "SKIPPED (VOICEBOT_CONTAINER_TEST=skip)"
    exit 0
fi

# podman runs as root here; rootless podman needs subuid ranges this sandbox lacks.
need=()
for tool in podman runc debootstrap; do
    command -v "$tool" >/dev/null 2>&1 || need+=("$tool")
done
if ((${#need[@]})); then
    if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
        say "SKIPPED: ${need[*]} missing and apt-get cannot install them here (not root or no apt)"
        exit 0
    fi
    say "installing podman, runc, debootstrap with apt-get"
    if ! { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        --no-install-recommends podman runc debootstrap uidmap slirp4netns fuse-overlayfs \
        ca-certificates; } >/tmp/voicebot-container-apt.log 2>&1; then
        tail -20 /tmp/voicebot-container-apt.log
        say "SKIPPED: apt-get could not install podman/runc/debootstrap (log above)"
        exit 0
    fi
fi

export CONTAINERS_CONF=$PWD/$here/containers.conf
BASE=localhost/debian:bookworm
IMAGE=localhost/voicebot:cpu-test

# --- the base image: Debian 12 from the mirror apt uses, no registry --------------------
if ! podman image exists "$BASE"; then
    mirror=$(grep -rhoE '(https?://[^ ]*debian)/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/ \
        2>/dev/null | grep -v security | head -1 | tr -d ' ' || true)
    mirror=${mirror:-http://deb.debian.org/debian}
    say "making $BASE with debootstrap from $mirror (once per machine, ~2 min)"
    root=$(mktemp -d /var/tmp/voicebot-debootstrap.XXXXXX)
    trap 'rm -rf "$root"' EXIT
    debootstrap --variant=minbase bookworm "$root" "$mirror" >/tmp/voicebot-debootstrap.log 2>&1 \
        || { tail -20 /tmp/voicebot-debootstrap.log; exit 1; }
    # Test-only: pip inside a build here must trust the host's CA bundle (TLS to PyPI is
    # re-signed by this network). It sits beside Debian's bundle so ca-certificates' own
    # update does not overwrite it; Dockerfile.gpu itself knows nothing of it.
    mkdir -p "$root/etc/ssl"
    cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/host-ca-bundle.crt"
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" -c . | podman import --quiet \
        --change 'ENV PIP_CERT=/etc/ssl/host-ca-bundle.crt' \
        --change 'ENV SSL_CERT_FILE=/etc/ssl/host-ca-bundle.crt' \
        --change 'ENV REQUESTS_CA_BUNDLE=/etc/ssl/host-ca-bundle.crt' \
        --change 'CMD ["/bin/bash"]' - "$BASE" >/dev/null
    rm -rf "$root"
    trap - EXIT
fi

# --- the llama.cpp wheel: the one the host venv uses, passed in the build context --------
PYTHON=${PYTHON:-.venv/bin/python}
if [[ -x "$PYTHON" ]] && [[ $("$PYTHON" -c 'import sys; print(sys.version_info[:2] == (3, 11))') == True ]]; then
    # Prints the cached folder at once when the venv's wheel is there (builds it otherwise).
    wheels=$(deployment/build_llama_cpp.sh "$PYTHON" cpu)
    rm -rf deployment/wheels/llama_cpp_python-*
    cp -r "$wheels" deployment/wheels/
fi

# --- build -------------------------------------------------------------------------------
say "building $IMAGE from Dockerfile.gpu (VARIANT=cpu)"
start=$(date +%s)
# --network host: the build's RUN steps reach PyPI the way the host does.
set +e
podman build --format docker --network host \
    --build-arg VARIANT=cpu \
    --build-arg BASE_IMAGE="$BASE" \
    --build-arg BUILDER_IMAGE="$BASE" \
    -f Dockerfile.gpu -t "$IMAGE" . >/tmp/voicebot-container-build.log 2>&1
status=$?
set -e
grep -E '^(STEP|COMMIT)' /tmp/voicebot-container-build.log || true
if [[ $status -ne 0 ]]; then
    tail -40 /tmp/voicebot-container-build.log
    say "FAILED: podman build exited $status"
    exit "$status"
fi
say "built in $(( $(date +%s) - start )) s; size $(podman image inspect "$IMAGE" --format '{{.Size}}' | awk '{printf "%.0f MB", $1/1e6}')"

# --- run and check ---------------------------------------------------------------------
VOICEBOT_CONTAINER_IMAGE=$IMAGE exec "$PYTHON" -m pytest -p no:cacheprovider "$here" "$@"
