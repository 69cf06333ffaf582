"""Dockerfile.gpu's CPU image, run for real by podman: health, a spoken turn, non-root, stop.

Run by tests/container/run_container_test.sh, which builds the image and names it in
VOICEBOT_CONTAINER_IMAGE; skipped in the normal suite. The container shares the host's
network (`--network host`), so the real client here talks to the server inside it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import free_port, wait_for_status
from voicebot.tools.client import run_turn

IMAGE = os.environ.get("VOICEBOT_CONTAINER_IMAGE", "")
# The image listens on every interface, so the server needs API keys (server/auth.py).
API_KEY = "container-test-key"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.container,
    pytest.mark.skipif(
        not IMAGE, reason="builds an image first: run tests/container/run_container_test.sh"
    ),
]


def podman(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def resolved_port(env: dict[str, str]) -> int:
    """server.port as `voicebot config show` resolves it inside the image with `env`."""
    flags = [f"--env={k}={v}" for k, v in env.items()]
    done = podman("run", "--rm", "--network=host", *flags, IMAGE, "config", "show", "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    return int(json.loads(done.stdout.strip().splitlines()[-1])["config"]["server"]["port"])


def test_port_comes_from_cloud_run_port_unless_set_explicitly() -> None:
    assert resolved_port({}) == 7860
    assert resolved_port({"PORT": "8123"}) == 8123
    assert resolved_port({"PORT": "8123", "VOICEBOT_SERVER__PORT": "9001"}) == 9001


@pytest.fixture(scope="module")
def container() -> Iterator[tuple[str, str]]:
    """The image serving on a free host port given as Cloud Run's PORT; yields (name, url)."""
    port = free_port()
    name = f"voicebot-test-{port}"
    started = podman(
        "run",
        "--detach",
        f"--name={name}",
        "--network=host",
        f"--env=PORT={port}",
        f"--env=VOICEBOT_API_KEYS={API_KEY}",
        IMAGE,
    )
    assert started.returncode == 0, started.stderr[-2000:]
    url = f"http://127.0.0.1:{port}"
    try:
        # Loading and warming the bundled models takes 30-60 s on 2 busy cores.
        wait_for_status(url, timeout_s=300)
        yield name, url
    except TimeoutError:
        pytest.fail(f"/health never turned 200; container log:\n{logs(name)}")
    finally:
        podman("rm", "--force", "--volumes", name)


def logs(name: str) -> str:
    done = podman("logs", "--tail=60", name)
    return done.stdout[-6000:] + done.stderr[-6000:]


def test_health_is_200_once_models_are_warm(container: tuple[str, str]) -> None:
    import httpx

    assert httpx.get(f"{container[1]}/health", timeout=10).status_code == 200
    assert httpx.get(f"{container[1]}/config", timeout=10).status_code == 401


async def test_a_spoken_question_is_answered_with_audio(
    container: tuple[str, str], question_pcm: dict[str, np.ndarray]
) -> None:
    import httpx

    # A backend's flow: a session token from /start with the key, then the WebSocket.
    async with httpx.AsyncClient(timeout=10) as client:
        started = await client.post(
            f"{container[1]}/start",
            json={"transport": "ws"},
            headers={"Authorization": f"Bearer {API_KEY}"},
        )
    assert started.status_code == 200, started.text
    result = await run_turn(started.json()["url"], question_pcm["week"], reply_timeout_s=120)

    assert {"days", "week"} <= set(re.findall(r"[a-z]+", result.transcript.lower()))
    assert result.reply, result.events
    assert result.reply_audio_s > 0.3
    audio = np.frombuffer(result.reply_audio, dtype=np.int16)
    assert np.abs(audio).max() > 1000, "reply audio is silent"


def test_server_is_pid_1_and_not_root(container: tuple[str, str]) -> None:
    # PID 1 must be the server itself (exec form + exec in the entry point), so SIGTERM
    # reaches it; and it must not run as root.
    status = podman("exec", container[0], "cat", "/proc/1/status", "/proc/1/cmdline")
    assert status.returncode == 0, status.stderr
    uids = re.search(r"^Uid:\s+(\d+)\s+(\d+)", status.stdout, re.MULTILINE)
    assert uids is not None and uids.groups() != ("0", "0")
    assert int(uids.group(1)) != 0 and int(uids.group(2)) != 0
    assert "voicebot\x00serve" in status.stdout
    assert podman("exec", container[0], "id", "-u").stdout.strip() != "0"


def test_image_healthcheck_passes(container: tuple[str, str]) -> None:
    done = podman("healthcheck", "run", container[0])
    assert done.returncode == 0, done.stdout + done.stderr


def test_cache_volume_is_writable_by_the_server_user(container: tuple[str, str]) -> None:
    done = podman("exec", container[0], "sh", "-c", 'touch "$VOICEBOT_CACHE_DIR/probe" && echo ok')
    assert done.stdout.strip() == "ok", done.stderr


def test_stop_is_clean_and_quick(container: tuple[str, str]) -> None:
    name = container[0]
    start = time.monotonic()
    done = podman("stop", "--time=10", name, timeout=60)
    elapsed = time.monotonic() - start
    assert done.returncode == 0, done.stderr
    exit_code = podman("inspect", name, "--format={{.State.ExitCode}}").stdout.strip()
    # 137 would mean podman gave up waiting and killed it: SIGTERM did not stop the server.
    assert exit_code == "0", f"exit code {exit_code}; log:\n{logs(name)}"
    assert elapsed < 10, f"stop took {elapsed:.1f} s"


def test_image_metadata_keeps_healthcheck_and_port() -> None:
    done = podman("image", "inspect", IMAGE)
    assert done.returncode == 0, done.stderr
    image = json.loads(done.stdout)[0]
    config = image["Config"]
    assert config["User"] == "10001:10001"
    assert "7860/tcp" in config["ExposedPorts"]
    assert "/cache" in config["Volumes"]
    # Kept only in the docker format (`podman build --format docker`); OCI images drop it.
    assert Path(image["Healthcheck"]["Test"][-1]).name == "healthcheck.py"
