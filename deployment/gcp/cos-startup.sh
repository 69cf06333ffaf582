#!/bin/bash
# GCE start-up script for a Container-Optimized OS VM with an NVIDIA GPU (e.g. g2-standard-8
# with an L4, or n1 + T4): installs the driver, mounts a data disk for models and caches,
# and runs the voicebot image with host networking, so WebRTC's UDP media works (Cloud Run
# carries only HTTP/WebSocket).
#
# Metadata keys read (set with --metadata): voicebot-image (required), voicebot-env
# (optional, lines of KEY=VALUE for the container, e.g. GROQ_API_KEY=..., VOICEBOT_API_KEYS=...;
# without VOICEBOT_API_KEYS the container generates a key, kept in
# /mnt/disks/voicebot/cache/api_key, and logs a ready-to-use page link once it is up).
set -euo pipefail

metadata() {
    curl -fsS -H "Metadata-Flavor: Google" \
        "http://metadata.google.internal/computeMetadata/v1/instance/attributes/$1" || true
}
image=$(metadata voicebot-image)
if [[ -z "$image" ]]; then
    echo "voicebot: set the voicebot-image metadata key to the image to run" >&2
    exit 1
fi

# The driver, from COS's signed build for this kernel; its libraries stay under
# /var/lib/nvidia, which must allow exec to be mounted into the container.
cos-extensions install gpu
mount --bind /var/lib/nvidia /var/lib/nvidia
mount -o remount,exec /var/lib/nvidia
/var/lib/nvidia/bin/nvidia-smi -L

# Models and caches on a persistent disk named voicebot-data, if one is attached; the
# image's user (uid 10001) owns them.
data=/mnt/disks/voicebot
disk=/dev/disk/by-id/google-voicebot-data
mkdir -p "$data"
if [[ -e "$disk" ]]; then
    blkid "$disk" >/dev/null || mkfs.ext4 -m 0 -F "$disk"
    mountpoint -q "$data" || mount -o discard,defaults "$disk" "$data"
fi
mkdir -p "$data/cache/models/whisper"
chown -R 10001:10001 "$data/cache"

metadata voicebot-env >/var/run/voicebot.env

# Artifact Registry credentials for the VM's service account. COS's /root is read-only, so
# docker's config lives in a writable HOME.
export HOME=/var/lib/voicebot
mkdir -p "$HOME"
registry=${image%%/*}
docker-credential-gcr configure-docker --registries="$registry"

docker rm -f voicebot >/dev/null 2>&1 || true
# --stop-timeout: longer than server.drain_secs (20 s), so a stop lets turns finish.
docker run --detach --name voicebot --restart unless-stopped --stop-timeout 30 \
    --network host \
    --volume /var/lib/nvidia/lib64:/usr/local/nvidia/lib64 \
    --volume /var/lib/nvidia/bin:/usr/local/nvidia/bin \
    --device /dev/nvidia0:/dev/nvidia0 \
    --device /dev/nvidia-uvm:/dev/nvidia-uvm \
    --device /dev/nvidiactl:/dev/nvidiactl \
    --volume "$data/cache:/cache" \
    --env VOICEBOT_STT__WHISPER__MODELS_DIR=/cache/models/whisper \
    --env-file /var/run/voicebot.env \
    "$image"
