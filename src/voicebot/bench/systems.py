"""The compared systems as server processes: how each is started and what it costs.

voicebot runs as `voicebot serve`; the hand-written loop and the stock Pipecat bot live in
the repository's tests/benchmark/ (not in the package) and are handed, through their
environment variables, the model files and settings voicebot resolved.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import websockets
from pydantic import ValidationError

from voicebot import model_files
from voicebot.config import ENV_PREFIX, Settings
from voicebot.errors import InputError
from voicebot.protocol import ReadyEvent, decode_event
from voicebot.providers.llm.local import cpu_threads, llm_decode_threads

SYSTEMS = ("voicebot", "loop", "stock")
DESCRIPTIONS = {
    "voicebot": "voicebot serve (this product: Pipecat pipeline, shared models, turn detection)",
    "loop": "tests/benchmark/classic_loop.py (hand-written sequential FastAPI loop)",
    "stock": "tests/benchmark/stock_pipecat.py (stock Pipecat services, per-session models)",
}
_MODULES = {"loop": "tests.benchmark.classic_loop", "stock": "tests.benchmark.stock_pipecat"}
# `voicebot@turn.speculative=true@vad.stop_secs=0.3`: voicebot with settings changed, so an
# A/B of one setting runs through the same harness in one run.
VARIANT_MARK = "@"


def base_system(system: str) -> str:
    """The system a name stands for: `voicebot` for a voicebot variant."""
    return system.split(VARIANT_MARK, 1)[0]


def describe(system: str) -> str:
    """The system's description, with a variant's changed settings."""
    base, *changes = system.split(VARIANT_MARK)
    return DESCRIPTIONS[base] + (f", with {', '.join(changes)}" if changes else "")


def variant_env(system: str) -> dict[str, str]:
    """The environment variables a `voicebot@section.key=value...` system sets.

    Each change is checked against the settings first, so a misspelt key or a bad value is
    refused before anything starts.
    """
    base, *changes = system.split(VARIANT_MARK)
    if not changes:
        return {}
    if base != "voicebot":
        raise InputError(f"{system!r}: only voicebot takes settings ({VARIANT_MARK}key=value)")
    env: dict[str, str] = {}
    nested: dict[str, object] = {}
    for change in changes:
        key, sep, value = change.partition("=")
        path = key.strip().split(".")
        if not sep or len(path) < 2 or not all(path):
            raise InputError(
                f"{system!r}: write each change as {VARIANT_MARK}section.key=value, "
                f"e.g. voicebot{VARIANT_MARK}turn.speculative=true"
            )
        node = nested
        for part in path[:-1]:
            child = node.setdefault(part, {})
            assert isinstance(child, dict)
            node = child
        node[path[-1]] = value.strip()
        env[ENV_PREFIX + "__".join(p.upper() for p in path)] = value.strip()
    try:
        Settings.from_sources({}, nested)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())
        raise InputError(f"{system!r}: {problems}") from e
    return env


def repo_root() -> Path:
    """The checkout holding tests/benchmark/ (the working folder, or the one above src/)."""
    here = Path(__file__).resolve().parents[3]
    for folder in (Path.cwd(), here):
        if (folder / "tests" / "benchmark" / "classic_loop.py").is_file():
            return folder
    raise InputError(
        "voicebot bench loop needs the repository checkout (tests/benchmark/classic_loop.py): "
        "run it from the repository root"
    )


def loop_env(settings: Settings) -> dict[str, str]:
    """The loop's environment variables for the models and settings voicebot resolved."""
    chosen = (settings.stt.provider, settings.llm.provider, settings.tts.provider)
    if chosen != ("whisper", "llama_cpp", "piper") or settings.vad.provider != "silero":
        raise InputError(
            "the comparison runs Whisper, llama.cpp, Piper and Silero in every system; "
            f"this configuration uses stt={chosen[0]}, llm={chosen[1]}, tts={chosen[2]}, "
            f"vad={settings.vad.provider}. Use the CPU default (configs/cpu_fallback.yaml)"
        )
    llm = settings.llm
    return {
        "WHISPER_MODEL": str(model_files.whisper_model_dir(settings)),
        "WHISPER_COMPUTE_TYPE": settings.stt.whisper.compute_type,
        "LLM_MODEL_PATH": str(
            model_files.gguf_file(llm.llama_cpp.model_path, "llm.llama_cpp.model_path")
        ),
        "LLM_MAX_TOKENS": str(llm.max_tokens),
        "LLM_TEMPERATURE": str(llm.temperature),
        "LLM_REPEAT_PENALTY": str(llm.repeat_penalty),
        "LLM_N_CTX": str(llm.llama_cpp.n_ctx),
        "SYSTEM_PROMPT": llm.system_prompt,
        "PIPER_VOICE": str(
            model_files.piper_voice_file(settings.tts.piper.voice, settings.tts.piper.voice_dir)
        ),
        "VAD_CONFIDENCE": str(settings.vad.confidence),
        "VAD_START_SECS": str(settings.vad.start_secs),
        "VAD_STOP_SECS": str(settings.vad.stop_secs),
        "FIRST_CLAUSE_WORDS": str(settings.tts.first_clause_words),
        "CPU_THREADS": str(cpu_threads(settings.stt.whisper.cpu_threads)),
        "LLM_THREADS": str(llm_decode_threads(llm.llama_cpp.n_threads)),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def command(system: str, port: int, config_file: Path | None) -> list[str]:
    if base_system(system) == "voicebot":
        cli = "from voicebot.cli import main; raise SystemExit(main())"
        extra = ["--config", str(config_file)] if config_file else []
        return [sys.executable, "-c", cli, "serve", "--port", str(port), *extra]
    return [sys.executable, "-m", _MODULES[system], "--port", str(port)]


class ProcessTree:
    """CPU seconds and resident memory of a process and all its descendants."""

    def __init__(self, pid: int) -> None:
        self._root = psutil.Process(pid)

    def _members(self) -> list[psutil.Process]:
        try:
            return [self._root, *self._root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def cpu_s(self) -> float:
        total = 0.0
        for process in self._members():
            try:
                t = process.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += t.user + t.system + t.children_user + t.children_system
        return total

    def rss_bytes(self) -> int:
        total = 0
        for process in self._members():
            try:
                total += process.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        return total


class RunningSystem:
    """One system's server process, started and waited for until its first session is ready."""

    def __init__(self, system: str, settings: Settings, config_file: Path | None) -> None:
        self.system = system
        self.port = free_port()
        env = {**os.environ, **variant_env(system)}
        cwd = None
        if base_system(system) != "voicebot":
            root = repo_root()
            cwd = root
            env.update(loop_env(settings))
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(root), env.get("PYTHONPATH", "")) if p
            )
        self.log = Path(tempfile.mkstemp(prefix=f"voicebot-bench-{system}-", suffix=".log")[1])
        self._log_file = self.log.open("w")
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            command(system, self.port, config_file),
            cwd=cwd,
            env=env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )
        self.tree = ProcessTree(self.process.pid)

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def log_tail(self, lines: int = 15) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    async def wait_warm(self, timeout_s: float) -> float:
        """Seconds from process start to /health 200 and a session's `ready` message."""
        deadline = self.started + timeout_s
        while not await asyncio.to_thread(self._healthy):
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.system} exited with code {self.process.returncode}:\n{self.log_tail()}"
                )
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{self.system} was not healthy within {timeout_s:.0f} s")
            await asyncio.sleep(0.1)
        remaining = max(1.0, deadline - time.perf_counter())
        async with websockets.connect(self.ws_url, max_size=None, open_timeout=remaining) as ws:
            ready = decode_event(await asyncio.wait_for(ws.recv(), remaining))
        if not isinstance(ready, ReadyEvent):
            raise RuntimeError(f"{self.system} sent {ready} instead of ready")
        return time.perf_counter() - self.started

    def _healthy(self) -> bool:
        url = f"http://127.0.0.1:{self.port}/health"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return int(response.status) == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self._log_file.close()
