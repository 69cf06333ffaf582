"""Helpers the tests share: settings tweaks, subprocesses, ports, and listening to audio."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import soxr
from prometheus_client.parser import text_string_to_metric_families

from voicebot.config import Settings
from voicebot.models import SharedModels

REPO = Path(__file__).resolve().parent.parent
VOICEBOT = str(Path(sys.executable).with_name("voicebot"))


# `voicebot serve` with the session limits lifted: tests open many sessions from one address
# (the limits themselves are tested on servers of their own, test_access_server.py).
UNLIMITED_SESSIONS_ENV = {
    "VOICEBOT_SERVER__MAX_SESSIONS": "64",
    "VOICEBOT_SERVER__MAX_SESSIONS_PER_CLIENT": "0",
    "VOICEBOT_SERVER__RATE_LIMIT_BURST": "100000",
    "VOICEBOT_SERVER__RATE_LIMIT_PER_MINUTE": "1000000",
}


def tweak(settings: Settings, **sections: dict[str, Any]) -> Settings:
    """`settings` with some fields of some sections replaced: tweak(s, stt={"model": "base"})."""
    return settings.model_copy(
        update={
            name: getattr(settings, name).model_copy(update=values)
            for name, values in sections.items()
        }
    )


def tweak_whisper(settings: Settings, **values: Any) -> Settings:
    """`settings` with some `stt.whisper` fields replaced: tweak_whisper(s, model="base")."""
    whisper = settings.stt.whisper.model_copy(update=values)
    return tweak(settings, stt={"whisper": whisper})


def thread_nice() -> int:
    """The calling thread's own nice value (Linux threads each have one)."""
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


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


async def metrics_once_no_session_runs(client: httpx.AsyncClient, timeout_s: float = 60) -> str:
    """Scrape /metrics until `voicebot_active_sessions` is 0 on every transport; the text.

    A session's place is given back only once its pipeline has wound down, a while after
    the client saw it close; how long depends on the machine.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        text = (await client.get("/metrics")).text
        active = [
            sample.value
            for family in text_string_to_metric_families(text)
            if family.name == "voicebot_active_sessions"
            for sample in family.samples
        ]
        if not any(active) or time.monotonic() > deadline:
            assert not any(active), f"sessions still running after {timeout_s} s: {active}"
            return text
        await asyncio.sleep(0.1)


def words(text: str) -> set[str]:
    """The lower-case words of `text`, for comparing what was said with what was heard."""
    return set(re.findall(r"[a-z']+", text.lower()))


def heard_stems(stems: Iterable[str], heard: set[str]) -> set[str]:
    """The `stems` that begin a word in `heard`: "boil" is heard in "boiling", "apple" in
    "apples" (Whisper's inflections change with the CPU's int8 kernels and Piper's noise)."""
    return {stem for stem in stems if any(word.startswith(stem) for word in heard)}


def hear(models: SharedModels, pcm16: bytes | np.ndarray, sample_rate: int) -> str:
    """What the shared Whisper model hears in PCM16 audio at `sample_rate`."""
    audio = np.frombuffer(pcm16, np.int16) if isinstance(pcm16, bytes) else pcm16
    samples = soxr.resample(audio.astype(np.float32) / 32768, sample_rate, 16000)
    segments, _ = models.stt.model.transcribe(samples, language="en", beam_size=1)
    return " ".join(s.text for s in segments)
