"""The shared Whisper engine with the real bundled models: words, silence, batching, OOM healing."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

import faster_whisper
import numpy as np
import pytest
import soundfile as sf
import soxr
import websockets

from tests.helpers import heard_stems, run_voicebot, tweak, tweak_whisper, words
from voicebot.config import Settings
from voicebot.models import SharedModels
from voicebot.providers.stt.whisper import load_engine
from voicebot.providers.stt.whisper_decode import WhisperBackend
from voicebot.providers.stt.whisper_engine import WhisperEngine
from voicebot.tools.local_server import LocalServer

RATE = 16000


def floats(pcm: np.ndarray) -> np.ndarray:
    return pcm.astype(np.float32) / 32768.0


@pytest.fixture(scope="module")
def engine(models: SharedModels) -> WhisperEngine:
    return models.stt


@pytest.fixture(scope="module")
def base_engine(settings: Settings, models: SharedModels) -> WhisperEngine:
    """The bundled Whisper base (reassembled from its two packages), on the CPU."""
    engine = load_engine(tweak_whisper(settings, model="base", device="cpu", compute_type="int8"))
    engine.warm()
    return engine


@pytest.mark.parametrize("name", ["capital", "week", "sky", "cook", "weather"])
async def test_questions_transcribed_with_their_key_words(
    engine: WhisperEngine,
    base_engine: WhisperEngine,
    question_pcm: dict[str, np.ndarray],
    keywords: dict[str, Any],
    name: str,
) -> None:
    for each in (engine, base_engine):
        result = await each.transcribe(floats(question_pcm[name]))
        # Whisper base heard "how the boiling egg" on an AMD EPYC, "how to boil an egg" on Intel.
        assert heard_stems(keywords[name], words(result.text)) == set(keywords[name]), (
            each.description,
            result.text,
        )
        assert result.rtf > 0 and result.duration_s == pytest.approx(
            len(question_pcm[name]) / RATE, abs=0.01
        )


def _noise(kind: str, seconds: float = 3.0) -> np.ndarray:
    rng = np.random.default_rng(7)
    n = int(seconds * RATE)
    if kind == "silence":
        return np.zeros(n, np.float32)
    if kind == "white noise":
        return (0.1 * rng.standard_normal(n)).astype(np.float32)
    if kind == "quiet hiss":
        return (0.005 * rng.standard_normal(n)).astype(np.float32)
    if kind == "breath":
        # Low-passed noise in slow swells, like breathing near a microphone.
        brown = np.cumsum(rng.standard_normal(n))
        brown = brown - np.convolve(brown, np.ones(400) / 400, mode="same")
        swell = 0.5 * (1 - np.cos(2 * np.pi * np.arange(n) / (1.5 * RATE)))
        return (0.05 * swell * brown / np.abs(brown).max()).astype(np.float32)
    if kind == "hum":
        t = np.arange(n) / RATE
        return (0.05 * np.sin(2 * np.pi * 50 * t)).astype(np.float32)
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["silence", "white noise", "quiet hiss", "breath", "hum"])
async def test_non_speech_gives_no_text(engine: WhisperEngine, kind: str) -> None:
    result = await engine.transcribe(_noise(kind))
    assert result.text == ""


async def test_odd_inputs(engine: WhisperEngine, question_pcm: dict[str, np.ndarray]) -> None:
    assert (await engine.transcribe(np.zeros(0, np.float32))).text == ""
    assert (await engine.transcribe(np.zeros(160, np.float32))).text == ""  # 10 ms
    broken = floats(question_pcm["week"]).copy()
    broken[::500] = np.nan
    broken[1::500] = np.inf
    assert "week" in words((await engine.transcribe(broken)).text)
    clipped = np.clip(floats(question_pcm["week"]) * 50, -1, 1)
    assert "week" in words((await engine.transcribe(clipped)).text)


@pytest.mark.slow
async def test_long_utterance_is_capped(
    settings: Settings, models: SharedModels, question_pcm: dict[str, np.ndarray]
) -> None:
    short = load_engine(tweak_whisper(settings, max_utterance_secs=2.0))
    speech = np.concatenate([floats(question_pcm["capital"]), floats(question_pcm["week"])])
    result = await short.transcribe(speech)
    assert result.duration_s == 2.0
    assert "france" in words(result.text) and "week" not in words(result.text)
    assert short.stats.capped == 1


@pytest.mark.slow
async def test_concurrent_utterances_are_batched(
    settings: Settings,
    models: SharedModels,
    question_pcm: dict[str, np.ndarray],
    keywords: dict[str, Any],
) -> None:
    batching = load_engine(tweak_whisper(settings, batch_size=8))
    names = ["capital", "week", "sky", "cook", "weather"] * 2
    results = await asyncio.gather(*(batching.transcribe(floats(question_pcm[n])) for n in names))
    for name, result in zip(names, results, strict=True):
        assert set(keywords[name]) <= words(result.text), (name, result.text)
    # All ten were waiting at once: the first runs alone, the rest in batches of <= 8.
    assert batching.stats.model_calls < len(names)
    assert batching.stats.max_batch > 1


@pytest.mark.slow
async def test_one_utterance_at_a_time_when_batching_is_off(
    engine: WhisperEngine, question_pcm: dict[str, np.ndarray]
) -> None:
    assert engine.options.max_batch_size == 1  # what auto-tuning picks on a CPU
    results = await asyncio.gather(
        *(engine.transcribe(floats(question_pcm["sky"])) for _ in range(3))
    )
    assert [r.batch_size for r in results] == [1, 1, 1]
    assert all("blue" in words(r.text) for r in results)


class _FlakyEncoder:
    """Wraps CTranslate2's Whisper model: `encode` fails like a full GPU `failures` times."""

    def __init__(self, real: Any, failures: int) -> None:
        self._real = real
        self.failures = failures

    def encode(self, *args: Any, **kwargs: Any) -> Any:
        if self.failures > 0:
            self.failures -= 1
            raise RuntimeError("CUDA failed with error out of memory")
        return self._real.encode(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def _engine_with_flaky_encoder(settings: Settings, failures: int, fallback: bool) -> WhisperEngine:
    engine = load_engine(settings)
    engine.model.model = _FlakyEncoder(engine.model.model, failures)  # type: ignore[assignment]
    if fallback:

        def cpu() -> WhisperBackend:
            return WhisperBackend(load_engine(settings).model, "tiny.en", "cpu", "int8")

        engine._decoder._fallback = cpu
        engine._decoder.backend.device = "cuda"  # as if it had been running on a GPU
    return engine


async def test_cuda_oom_once_retries_with_a_smaller_batch(
    settings: Settings, question_pcm: dict[str, np.ndarray]
) -> None:
    engine = _engine_with_flaky_encoder(settings, failures=1, fallback=True)
    results = await asyncio.gather(
        *(engine.transcribe(floats(question_pcm[n])) for n in ("capital", "week"))
    )
    assert "france" in words(results[0].text) and "week" in words(results[1].text)
    assert engine.stats.oom_retries == 1 and engine.stats.fallbacks == 0


async def test_cuda_oom_twice_falls_back_and_the_session_gets_its_text(
    settings: Settings, question_pcm: dict[str, np.ndarray]
) -> None:
    engine = _engine_with_flaky_encoder(settings, failures=1000, fallback=True)
    result = await engine.transcribe(floats(question_pcm["capital"]))
    assert "france" in words(result.text)
    assert engine.stats.fallbacks == 1 and result.device == "cpu" and result.compute_type == "int8"
    # Later utterances go straight to the fallback model.
    assert "week" in words((await engine.transcribe(floats(question_pcm["week"]))).text)


@pytest.mark.slow
async def test_other_errors_are_not_swallowed(
    settings: Settings, question_pcm: dict[str, np.ndarray]
) -> None:
    engine = load_engine(settings)

    class Broken:
        def encode(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("cuBLAS failed with status CUBLAS_STATUS_NOT_SUPPORTED")

        def __getattr__(self, name: str) -> Any:
            return getattr(engine_model, name)

    engine_model = engine.model.model
    engine.model.model = Broken()  # type: ignore[assignment]
    with pytest.raises(RuntimeError, match="CUBLAS_STATUS_NOT_SUPPORTED"):
        await engine.transcribe(floats(question_pcm["capital"]))
    engine.model.model = engine_model
    # The worker thread survived the failure.
    assert "france" in words((await engine.transcribe(floats(question_pcm["capital"]))).text)


async def _transcript_over_ws(url: str, pcm: np.ndarray) -> str:
    """Speak `pcm` into /ws at real-time pace, then silence, until a transcript arrives."""
    async with websockets.connect(url) as ws:
        assert json.loads(await ws.recv())["type"] == "ready"
        chunks = [pcm[i : i + 320].tobytes() for i in range(0, len(pcm), 320)]
        chunks += [bytes(640)] * 1500  # up to 30 s of silence: a busy machine is slow
        loop = asyncio.get_running_loop()
        start = loop.time()
        for n, chunk in enumerate(chunks):
            await ws.send(chunk)
            await asyncio.sleep(max(0.0, start + (n + 1) * 0.02 - loop.time()))
            try:
                while True:
                    message = await asyncio.wait_for(ws.recv(), 0.0001)
                    if (
                        isinstance(message, str)
                        and (event := json.loads(message))["type"] == "transcript"
                    ):
                        return str(event["text"])
            except TimeoutError:
                pass
    raise AssertionError("no transcript arrived")


async def test_eight_concurrent_sessions_share_the_engine(
    server: LocalServer,
    models: SharedModels,
    question_pcm: dict[str, np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    created: list[str] = []
    original = faster_whisper.WhisperModel.__init__

    def spy(self: Any, *args: Any, **kwargs: Any) -> None:
        created.append("WhisperModel")
        original(self, *args, **kwargs)

    monkeypatch.setattr(faster_whisper.WhisperModel, "__init__", spy)
    utterances_before = models.stt.stats.utterances
    texts = await asyncio.gather(
        *(_transcript_over_ws(server.ws_url, question_pcm["week"]) for _ in range(8))
    )
    for text in texts:
        assert {"days", "week"} <= words(text), texts
    assert created == []
    assert models.stt.stats.utterances - utterances_before >= 8  # all through the one engine


@pytest.mark.slow
async def test_energy_vad_session_transcribes(
    settings: Settings, models: SharedModels, question_pcm: dict[str, np.ndarray]
) -> None:
    energy = tweak(settings, vad={"provider": "energy"})
    async with LocalServer(energy, models=models) as server:
        text = await _transcript_over_ws(server.ws_url, question_pcm["capital"])
    assert {"capital", "france"} <= words(text)


@pytest.mark.slow
def test_transcribe_cli_resamples_any_file(question_wavs: dict[str, Path], tmp_path: Path) -> None:
    audio, rate = sf.read(question_wavs["sky"], dtype="float32")
    stereo = np.stack([audio, audio], axis=1)
    path = tmp_path / "sky-44k-stereo.wav"
    sf.write(path, soxr.resample(stereo, rate, 44100), 44100)
    done = run_voicebot("transcribe", str(path), "--json", timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert {"sky", "blue"} <= words(report["text"])
    assert set(report) == {
        "text",
        "language",
        "duration_s",
        "elapsed_ms",
        "rtf",
        "model",
        "device",
        "compute_type",
    }
    assert report["duration_s"] == pytest.approx(len(audio) / rate, abs=0.02)
    assert report["model"] == "tiny.en" and report["language"] == "en"
    assert 0 < report["rtf"] < 5


@pytest.mark.slow
def test_transcribe_cli_rejects_a_file_that_is_not_audio(tmp_path: Path) -> None:
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF\x00\x00garbage" * 10)
    done = run_voicebot("transcribe", str(junk), timeout=60)
    assert done.returncode == 2 and "not a readable audio file" in done.stderr


@pytest.mark.slow
@pytest.mark.gpu
async def test_fp16_on_the_gpu(settings: Settings, question_pcm: dict[str, np.ndarray]) -> None:
    gpu = tweak_whisper(settings, device="cuda", compute_type="float16")
    engine = load_engine(gpu)
    result = await engine.transcribe(floats(question_pcm["capital"]))
    assert result.device == "cuda" and "france" in words(result.text)


def _wait_until_running(future: Any) -> None:
    while not (future.running() or future.done()):
        time.sleep(0.005)


@pytest.mark.slow
async def test_a_caller_who_leaves_drops_only_its_own_request(
    settings: Settings,
    question_pcm: dict[str, np.ndarray],
    keywords: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A person hangs up while queued with others: the others still get their transcripts."""
    batching = load_engine(tweak_whisper(settings, batch_size=4))
    # Keep the worker busy so that the next requests wait in the queue together: its
    # first decode waits until they are queued (on a GPU it would otherwise be over first).
    queued = threading.Event()
    decode = batching._decoder.decode_healing

    def first_decode_held(samples: list[np.ndarray]) -> Any:
        queued.wait(60)
        return decode(samples)

    monkeypatch.setattr(batching._decoder, "decode_healing", first_decode_held)
    busy = batching.submit(floats(question_pcm["cook"]))
    await asyncio.to_thread(_wait_until_running, busy)
    leaving = asyncio.ensure_future(batching.transcribe(floats(question_pcm["capital"])))
    await asyncio.sleep(0)  # submitted
    leaving.cancel()  # the caller's task is cancelled, as when a session ends
    names = ["capital", "week", "sky"]
    waiting = [asyncio.ensure_future(batching.transcribe(floats(question_pcm[n]))) for n in names]
    await asyncio.sleep(0)  # submitted
    queued.set()
    results = await asyncio.gather(*waiting)
    for name, result in zip(names, results, strict=True):
        assert set(keywords[name]) <= words(result.text), (name, result.text)
        assert result.batch_size == 3  # decoded together, without the one that left
    assert set(keywords["cook"]) <= words(busy.result().text)
    assert leaving.cancelled() and batching.stats.cancelled == 1
    batching.close()


@pytest.mark.slow
async def test_a_closed_engine_refuses_new_work(settings: Settings) -> None:
    engine = load_engine(settings)
    engine.close()
    with pytest.raises(RuntimeError, match="closed"):
        engine.submit(np.zeros(RATE, np.float32))
