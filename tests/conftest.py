"""Shared fixtures: the real bundled models, loaded once, and a real server on 127.0.0.1."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import numpy as np
import pynvml
import pytest

from tests import nvml_readings as cards
from tests.fake_daily import FakeDailyRoom
from voicebot.autotune import resolve
from voicebot.config import Settings, load_settings
from voicebot.models import SharedModels
from voicebot.tools.client import load_pcm16k
from voicebot.tools.local_server import LocalServer
from voicebot.tools.samples import QUESTIONS, synthesise_questions

REPO = Path(__file__).resolve().parent.parent
VOICEBOT = str(Path(sys.executable).with_name("voicebot"))


@pytest.fixture(scope="session")
def settings() -> Settings:
    """The default settings, auto-tuned for this machine (CPU here, the GPU where there is one)."""
    return resolve(load_settings()).settings


def tweak(settings: Settings, **sections: dict[str, Any]) -> Settings:
    """`settings` with some fields of some sections replaced: tweak(s, stt={"model": "base"})."""
    return settings.model_copy(
        update={
            name: getattr(settings, name).model_copy(update=values)
            for name, values in sections.items()
        }
    )


@pytest.fixture(scope="session")
def models(settings: Settings) -> SharedModels:
    loaded = SharedModels.load(settings)
    loaded.warm()
    return loaded


@pytest.fixture(scope="session")
def question_wavs(tmp_path_factory: pytest.TempPathFactory, settings: Settings) -> dict[str, Path]:
    """The sample questions spoken by the bundled Piper voice, one WAV each."""
    return synthesise_questions(tmp_path_factory.mktemp("questions"), settings)


@pytest.fixture(scope="session")
def question_pcm(question_wavs: dict[str, Path]) -> dict[str, np.ndarray]:
    return {name: load_pcm16k(path) for name, path in question_wavs.items()}


@pytest.fixture(scope="session")
def keywords() -> dict[str, tuple[str, ...]]:
    return {q.name: q.keywords for q in QUESTIONS}


@pytest.fixture(scope="session")
async def server(settings: Settings, models: SharedModels) -> AsyncIterator[LocalServer]:
    """The real FastAPI app under uvicorn on a free loopback port, sharing `models`."""
    async with LocalServer(settings, models=models) as running:
        yield running


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_voicebot(
    *args: str, env: dict[str, str] | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """Run the installed `voicebot` console script and capture its output."""
    return subprocess.run(
        [VOICEBOT, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=REPO,
    )


@pytest.fixture
def serve_process() -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`voicebot serve` as a separate process on a free port; yields (process, base URL)."""
    port = free_port()
    process = subprocess.Popen(
        [VOICEBOT, "serve", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        yield process, url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def wait_for_status(url: str, timeout_s: float = 120) -> list[int]:
    """Poll GET /health until it answers 200; returns every status seen on the way."""
    seen: list[int] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            status = httpx.get(f"{url}/health", timeout=2).status_code
        except httpx.TransportError:
            time.sleep(0.05)
            continue
        seen.append(status)
        if status == 200:
            return seen
        time.sleep(0.05)
    raise TimeoutError(f"{url}/health did not turn 200 within {timeout_s} s (saw {seen})")


@pytest.fixture
def fake_nvml(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Replace the NVML library calls with recorded readings of the given cards."""

    def install(*installed: cards.Card) -> None:
        monkeypatch.setattr(pynvml, "nvmlInit", lambda: None)
        monkeypatch.setattr(pynvml, "nvmlShutdown", lambda: None)
        monkeypatch.setattr(pynvml, "nvmlDeviceGetCount", lambda: len(installed))
        monkeypatch.setattr(pynvml, "nvmlDeviceGetHandleByIndex", lambda i: installed[i])
        monkeypatch.setattr(pynvml, "nvmlDeviceGetName", lambda card: card.name)
        monkeypatch.setattr(
            pynvml,
            "nvmlDeviceGetMemoryInfo",
            lambda card: SimpleNamespace(
                total=card.total_bytes,
                free=card.total_bytes - card.used_bytes,
                used=card.used_bytes,
            ),
        )
        monkeypatch.setattr(
            pynvml, "nvmlDeviceGetCudaComputeCapability", lambda card: card.compute_capability
        )
        monkeypatch.setattr(pynvml, "nvmlSystemGetDriverVersion", lambda: cards.DRIVER)
        monkeypatch.setattr(
            pynvml, "nvmlSystemGetCudaDriverVersion", lambda: cards.CUDA_DRIVER_VERSION
        )

    return install


@pytest.fixture
def room(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDailyRoom]:
    """A fake Daily room: daily-python's CallClient replaced inside Pipecat's DailyTransport."""
    fake = FakeDailyRoom().install(monkeypatch)
    yield fake
    fake.close()
