"""Shared fixtures: the real bundled models, loaded once, and a real server on 127.0.0.1.

Plain helper functions live in tests/helpers.py (re-exported here for older imports).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pynvml
import pytest

from tests import nvml_readings as cards
from tests.fake_daily import FakeDailyRoom
from tests.helpers import (
    REPO,
    UNLIMITED_SESSIONS_ENV,
    VOICEBOT,
    free_port,
    run_voicebot,
    tweak,
    wait_for_status,
)
from voicebot.autotune import resolve
from voicebot.config import Settings, load_settings
from voicebot.models import SharedModels
from voicebot.tools.client import load_pcm16k
from voicebot.tools.local_server import LocalServer, without_session_limits
from voicebot.tools.samples import QUESTIONS, synthesise_questions


@pytest.fixture(scope="session")
def settings() -> Settings:
    """The default settings, auto-tuned for this machine (CPU here, the GPU where there is one)."""
    return resolve(load_settings()).settings


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
    """The real FastAPI app under uvicorn on a free loopback port, sharing `models`.

    Its session limits are lifted: tests open many sessions at once from one address
    (the limits themselves are tested on servers of their own, test_access_server.py).
    """
    async with LocalServer(without_session_limits(settings), models=models) as running:
        yield running


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
        # Session limits lifted, as for `server`: tests open many sessions from one address.
        env={**os.environ, **UNLIMITED_SESSIONS_ENV},
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


# Fixtures that load the real models or start a server: a test using one is `slow`.
SLOW_FIXTURES = frozenset(
    {
        "models",
        "server",
        "question_wavs",
        "question_pcm",
        "serve_process",
        "voices",
        "transformers_llm",
    }
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark tests over real models `slow`; `gpu` tests skip, saying why, where NVML sees no GPU."""
    from voicebot.gpu import read_nvml

    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)

    gpu_tests = [item for item in items if item.get_closest_marker("gpu")]
    if gpu_tests and not read_nvml().gpus:
        skip = pytest.mark.skip(reason="no NVIDIA GPU on this machine (NVML finds none)")
        for item in gpu_tests:
            item.add_marker(skip)


@pytest.fixture
def room(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDailyRoom]:
    """A fake Daily room: daily-python's CallClient replaced inside Pipecat's DailyTransport."""
    fake = FakeDailyRoom().install(monkeypatch)
    yield fake
    fake.close()


__all__ = ["REPO", "VOICEBOT", "free_port", "run_voicebot", "tweak", "wait_for_status"]
