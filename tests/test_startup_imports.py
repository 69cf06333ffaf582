"""Start-up does only what the first session needs: no WebRTC or Daily imports, models side by side.

What these guard is start-up time (README_PIPECAT.md, "Architecture"), checked without a
clock: which modules a fresh server process holds, and whether independent models load
and warm at the same time (each fake model waits at a barrier for the others).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
import threading
import typing
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import numpy as np
import pytest

from tests.fakes import FakeTTSService
from tests.helpers import REPO
from voicebot.config import Settings
from voicebot.errors import ConfigError
from voicebot.models import SharedModels
from voicebot.providers import spec as providers
from voicebot.providers.spec import ProviderSpec, Stage
from voicebot.providers.stt.whisper_engine import EngineOptions, WhisperEngine
from voicebot.server.state import ModelState
from voicebot.transports import webrtc

# Imported by SmallWebRTC (aiortc) or Daily (daily-python): none is needed until a WebRTC
# offer or a Daily session comes. (PyAV is not here: faster-whisper imports it.)
LAZY = (
    "aiortc",
    "aioice",
    "pylibsrtp",
    "daily",
    "pipecat.transports.smallwebrtc.connection",
    "pipecat.transports.smallwebrtc.request_handler",
    "pipecat.transports.smallwebrtc.transport",
    "pipecat.transports.daily.transport",
    "voicebot.transports.daily",
)

# What `voicebot serve` imports and does up to its lifespan's check of the providers (the
# models then load in threads), then a request to each WebRTC route while the models are
# not loaded (the lifespan does not run here, so they never are).
SERVE = """
import asyncio, json, sys
import httpx, uvicorn
from voicebot.autotune import resolve
from voicebot.cli import main
from voicebot.config import load_settings
from voicebot.providers import spec as providers
from voicebot.server import create_app
from voicebot.server.drain import DrainingServer
from voicebot.server.ws_protocol import VoicebotWebSocketProtocol

LAZY = {lazy!r}
settings = resolve(load_settings()).settings
app = create_app(settings)
providers.check(settings)
report = {{"after_start": [m for m in LAZY if m in sys.modules]}}
schema = app.openapi()
report["routes"] = sorted(f"{{m.upper()}} {{p}}" for p, ops in schema["paths"].items() for m in ops)
report["bodies"] = sorted(schema["components"]["schemas"])

async def requests():
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        bad = await http.post("/api/offer", json={{"type": "offer"}})
        report["bad_offer"] = [bad.status_code, [e["loc"] for e in bad.json()["detail"]]]
        report["after_bad_offer"] = [m for m in LAZY if m in sys.modules]
        offer = await http.post("/api/offer", json={{"sdp": "v=0", "type": "offer"}})
        report["offer"] = [offer.status_code, offer.json()["detail"]]
        patch = await http.patch("/api/offer", json={{"pc_id": "none", "candidates": []}})
        report["patch"] = [patch.status_code, patch.json()["detail"]]

asyncio.run(requests())
report["after_offer"] = [m for m in LAZY if m in sys.modules]
print(json.dumps(report))
"""


def _fresh_interpreter(
    script: str, *, timeout_s: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `script` in a new Python process, which must succeed; its stdout and stderr."""
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _report_of_fresh_interpreter(
    script: str, *, timeout_s: float, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run `script` in a new Python process; the JSON object its last line prints."""
    done = _fresh_interpreter(script, timeout_s=timeout_s, env=env)
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def test_a_fresh_server_imports_webrtc_only_when_an_offer_comes() -> None:
    report = _report_of_fresh_interpreter(SERVE.format(lazy=LAZY), timeout_s=300)
    assert report["after_start"] == []
    for route in (
        "POST /api/offer",
        "PATCH /api/offer",
        "POST /sessions/{session_id}/api/offer",
        "PATCH /sessions/{session_id}/api/offer",
        "POST /start",
        "GET /daily",
    ):
        assert route in report["routes"]
    assert {"SmallWebRTCRequest", "SmallWebRTCPatchRequest", "IceCandidate"} <= set(
        report["bodies"]
    )
    # The offer body is still validated by FastAPI, before anything is imported.
    assert report["bad_offer"] == [422, [["body", "sdp"]]]
    assert report["after_bad_offer"] == []
    # A real offer brings SmallWebRTC in (and is refused: the models are not loaded).
    assert report["offer"] == [503, "models are still loading; retry shortly"]
    assert report["patch"] == [404, "Peer connection not found"]  # Pipecat's handler answered
    assert {"aiortc", "pipecat.transports.smallwebrtc.request_handler"} <= set(
        report["after_offer"]
    )
    assert not {"daily", "voicebot.transports.daily"} & set(report["after_offer"])


# What `voicebot serve` imports first, then a matrix product like the mel filters'.
THREADS = """
import json, os
from voicebot.cli import main
import numpy as np
np.ones((400, 400)) @ np.ones((400, 400))
print(json.dumps({
    "threads": len(os.listdir("/proc/self/task")),
    "omp": os.environ.get("OMP_WAIT_POLICY"),
    "openblas": os.environ.get("OPENBLAS_NUM_THREADS"),
}))
"""


@pytest.mark.parametrize("preset", [None, "2"])
def test_a_server_starts_no_spinning_blas_threads(preset: str | None) -> None:
    """numpy's OpenBLAS workers spin after each product and slowed Whisper ~90 ms a turn;
    `import voicebot` keeps OpenBLAS to one thread unless the environment says otherwise."""
    env = {
        k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_WAIT_POLICY")
    }
    if preset:
        env["OPENBLAS_NUM_THREADS"] = preset
    report = _report_of_fresh_interpreter(THREADS, timeout_s=120, env=env)
    assert report["omp"] == "PASSIVE"
    if preset:
        assert report["openblas"] == preset
    else:
        assert report["openblas"] == "1"
        # The interpreter's own thread only: no BLAS worker (nor any other) was started.
        assert report["threads"] == 1


@pytest.mark.parametrize(
    ("ours", "pipecats"),
    [
        (webrtc.SmallWebRTCRequest, "SmallWebRTCRequest"),
        (webrtc.SmallWebRTCPatchRequest, "SmallWebRTCPatchRequest"),
        (webrtc.IceCandidate, "IceCandidate"),
    ],
)
def test_offer_bodies_are_pipecats_field_for_field(ours: type, pipecats: str) -> None:
    from pipecat.transports.smallwebrtc import request_handler

    def shape(cls: type) -> list[tuple[str, Any, Any]]:
        hints = typing.get_type_hints(cls)
        return [(f.name, _named(hints[f.name]), f.default) for f in dataclasses.fields(cls)]

    theirs = getattr(request_handler, pipecats)
    assert shape(ours) == shape(theirs)
    # And the conversion gives Pipecat's own class, with every field carried over.
    smallwebrtc = webrtc.SmallWebRTC.load()
    offer = smallwebrtc.offer(webrtc.SmallWebRTCRequest("v=0", "offer", "pc", True, {"a": 1}))
    assert offer == request_handler.SmallWebRTCRequest("v=0", "offer", "pc", True, {"a": 1})
    patch = smallwebrtc.patch(
        webrtc.SmallWebRTCPatchRequest("pc", [webrtc.IceCandidate("candidate:1", "0", 0)])
    )
    assert patch == request_handler.SmallWebRTCPatchRequest(
        "pc", [request_handler.IceCandidate("candidate:1", "0", 0)]
    )


def _named(hint: Any) -> Any:
    """A type hint with classes by name, so that ours and Pipecat's IceCandidate compare equal."""
    args = typing.get_args(hint)
    if not args:
        return getattr(hint, "__qualname__", repr(hint))
    return (typing.get_origin(hint), tuple(_named(a) for a in args))


class _Rendezvous:
    """Fake models whose load and warm-up each wait until all three have started theirs."""

    def __init__(self, fail: Stage | None = None) -> None:
        # Generous timeouts: one model loading after another breaks the barrier, not a clock.
        self.loads = threading.Barrier(3, timeout=60)
        self.warms = threading.Barrier(3, timeout=60)
        self.fail = fail
        self.loaded: list[Stage] = []
        self.warmed: list[Stage] = []

    def spec(self, stage: Stage) -> ProviderSpec:
        def load(_settings: Settings) -> str:
            self.loads.wait()
            if stage == self.fail:
                raise ConfigError(f"{stage} model is broken")
            self.loaded.append(stage)
            return f"{stage} model"

        def warm(_model: str) -> None:
            self.warms.wait()
            self.warmed.append(stage)

        return ProviderSpec(
            id="rendezvous",
            stage=stage,
            extra="test",
            requires=(),
            build=lambda _settings, _model: FakeTTSService(sample_rate=16000),  # not built here
            load=load,
            warm=warm,
            sample_rate=lambda _s, _m: 16000,
        )


@pytest.fixture
def rendezvous() -> Iterator[_Rendezvous]:
    models = _Rendezvous()
    yield from _registered(models)


@pytest.fixture
def broken_llm() -> Iterator[_Rendezvous]:
    yield from _registered(_Rendezvous(fail="llm"))


def _registered(models: _Rendezvous) -> Iterator[_Rendezvous]:
    for stage in ("stt", "llm", "tts"):
        providers.register(models.spec(stage))
    yield models
    for stage in ("stt", "llm", "tts"):
        providers.unregister(stage, "rendezvous")


RENDEZVOUS = {section: {"provider": "rendezvous"} for section in ("stt", "llm", "tts")}


def test_independent_models_load_and_warm_side_by_side(rendezvous: _Rendezvous) -> None:
    models = SharedModels.load(Settings(**RENDEZVOUS))
    assert sorted(rendezvous.loaded) == ["llm", "stt", "tts"]
    assert models.model("llm", "rendezvous") == "llm model"
    assert models.silero_session is not None and models.smart_turn_session is not None
    # Reported in a fixed order (/health's load_ms), whichever finished first.
    assert list(models.load_ms) == [
        "stt.rendezvous",
        "llm.rendezvous",
        "tts.rendezvous",
        "silero",
        "smart_turn",
    ]
    warm_ms = models.warm()
    assert sorted(rendezvous.warmed) == ["llm", "stt", "tts"]
    assert list(warm_ms) == ["stt.rendezvous", "llm.rendezvous", "tts.rendezvous", "turn"]


def test_a_model_that_fails_to_load_fails_the_load_after_the_others(
    broken_llm: _Rendezvous,
) -> None:
    with pytest.raises(ConfigError, match="llm model is broken"):
        SharedModels.load(Settings(**RENDEZVOUS))
    assert sorted(broken_llm.loaded) == ["stt", "tts"]  # no thread left running


def test_a_load_in_the_background_loads_and_warms_side_by_side(
    rendezvous: _Rendezvous,
) -> None:
    loading = SharedModels.load_in_background(Settings(**RENDEZVOUS))
    models = loading.result(timeout=120)
    assert sorted(rendezvous.loaded) == sorted(rendezvous.warmed) == ["llm", "stt", "tts"]
    assert list(models.warm_ms) == ["stt.rendezvous", "llm.rendezvous", "tts.rendezvous", "turn"]


def test_a_load_in_the_background_hands_its_error_to_whoever_waits(
    broken_llm: _Rendezvous,
) -> None:
    loading = SharedModels.load_in_background(Settings(**RENDEZVOUS))
    with pytest.raises(ConfigError, match="llm model is broken"):
        loading.result(timeout=120)


async def test_the_server_waits_for_models_whose_load_began_before_it() -> None:
    state = ModelState()
    loading: Future[SharedModels] = Future()
    waiting = asyncio.create_task(state.load(Settings(), loading))
    await asyncio.sleep(0.05)
    assert (state.models, state.error, waiting.done()) == (None, None, False)
    models = SharedModels(warm_ms={"tts.piper": 12.0})
    loading.set_result(models)
    await waiting
    assert state.models is models and state.warm_ms == {"tts.piper": 12.0}


async def test_an_early_load_that_failed_is_reported_by_the_server() -> None:
    state = ModelState()
    loading: Future[SharedModels] = Future()
    loading.set_exception(OSError("voice file unreadable"))
    await state.load(Settings(), loading)
    assert state.models is None and state.error == "OSError: voice file unreadable"


# `voicebot serve` up to the moment it starts loading the models: what it has imported then.
LOADING_STARTS = """
import json, sys
from voicebot.cli import main
from voicebot.models import SharedModels

seen = {}

class Started(Exception):
    pass

def load_in_background(settings):
    seen["server_app"] = "voicebot.server.app" in sys.modules
    seen["uvicorn"] = "uvicorn" in sys.modules
    seen["webrtc"] = "voicebot.transports.webrtc" in sys.modules
    raise Started

SharedModels.load_in_background = staticmethod(load_in_background)
try:
    main(["serve"])
except Started:
    pass
print(json.dumps(seen))
"""


def test_serve_starts_loading_the_models_before_it_imports_the_server() -> None:
    """The server's imports (FastAPI, Pipecat's transports: ~2 s on 2 cores) overlap the loads."""
    report = _report_of_fresh_interpreter(LOADING_STARTS, timeout_s=300)
    assert report == {"server_app": False, "uvicorn": False, "webrtc": False}


# The command line's own imports and, on a machine without a GPU, the auto-tuning: what
# they import of Pipecat (its import takes ~0.5 s on 2 cores, before any model loads).
TUNING = """
import json, sys
from voicebot.autotune import resolve
from voicebot.cli import main
from voicebot.config import load_settings
from voicebot.observability.logging import setup_logging

setup_logging("INFO")
resolve(load_settings(), probe=False)
print(json.dumps([m for m in sys.modules if m == "pipecat" or m.startswith("pipecat.")]))
"""


def test_the_command_line_and_cpu_tuning_import_no_pipecat() -> None:
    assert _report_of_fresh_interpreter(TUNING, timeout_s=120) == []


# What llama-cpp-python does while `Llama(verbose=False)` loads a model: fd 2 and
# sys.stderr point at /dev/null, for the whole process. Another model logs meanwhile.
LOAD_BESIDE_LLAMA = """
import json, threading
from llama_cpp._utils import suppress_stdout_stderr
from loguru import logger
from voicebot.observability.logging import setup_logging

setup_logging("INFO")
with suppress_stdout_stderr(disable=False):
    beside = threading.Thread(target=lambda: logger.info("whisper loaded beside llama.cpp"))
    beside.start()
    beside.join()
logger.info("llama.cpp loaded")
print(json.dumps(True))
"""


def test_what_other_threads_log_while_llama_cpp_loads_is_kept() -> None:
    done = _fresh_interpreter(LOAD_BESIDE_LLAMA)
    assert "whisper loaded beside llama.cpp" in done.stderr
    assert "llama.cpp loaded" in done.stderr


# `voicebot serve` sets up logging, then configures uvicorn while the models load: here,
# while llama-cpp-python has fd 1 and 2, `sys.stderr` and `sys.stdout` pointed at
# /dev/null. uvicorn logs a request during that load (a client polling /health) and a
# line after it.
UVICORN_BESIDE_LLAMA = """
import logging
import uvicorn
from llama_cpp._utils import suppress_stdout_stderr
from voicebot.observability.logging import setup_logging, uvicorn_log_config

async def app(scope, receive, send):
    pass

setup_logging("INFO")
access = ("127.0.0.1:5000", "GET", "/health", "1.1", 200)
with suppress_stdout_stderr(disable=False):
    uvicorn.Config(app, log_config=uvicorn_log_config())
    logging.getLogger("uvicorn.access").info('%s - "%s %s HTTP/%s" %d', *access)
logging.getLogger("uvicorn.error").info("WebSocket /ws [accepted]")
"""


def test_uvicorn_configured_while_llama_cpp_loads_still_logs() -> None:
    done = _fresh_interpreter(UVICORN_BESIDE_LLAMA)
    assert '"GET /health HTTP/1.1" 200' in done.stdout
    assert "WebSocket /ws [accepted]" in done.stderr


class _CountingWhisper:
    """Stands in for faster-whisper's model: counts single-utterance decodes."""

    def __init__(self) -> None:
        self.calls = 0

    def transcribe(self, audio: np.ndarray, **_options: Any) -> tuple[list[Any], None]:
        self.calls += 1
        return [], None


@pytest.mark.parametrize(("max_batch_size", "batched_warm"), [(1, False), (4, True)])
def test_whisper_warms_the_batched_path_only_where_batches_happen(
    max_batch_size: int, batched_warm: bool
) -> None:
    model = _CountingWhisper()
    engine = WhisperEngine(
        model,  # type: ignore[arg-type]
        name="counting",
        device="cpu",
        compute_type="int8",
        options=EngineOptions(max_batch_size=max_batch_size),
    )
    batched: list[int] = []

    class Pipeline:
        def transcribe(self, audio: np.ndarray, **options: Any) -> tuple[list[Any], None]:
            batched.append(options["batch_size"])
            return [], None

    engine._decoder.backend.batched = Pipeline()
    engine.warm()
    assert model.calls == 1
    assert batched == ([2] if batched_warm else [])
