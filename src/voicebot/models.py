"""The one loaded copy of each model, shared by every session: loaded and warmed once.

Which models: those of the providers the settings choose (a loop over the provider
specs), plus the VAD and turn analyzers' ONNX sessions. Sessions only borrow them.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from loguru import logger

from voicebot.config import Settings
from voicebot.providers import spec as providers
from voicebot.providers.spec import STAGES, ProviderSpec, Stage

if TYPE_CHECKING:
    import onnxruntime

    from voicebot.providers.stt.whisper_engine import WhisperEngine


@dataclass
class SharedModels:
    """Every model a session needs, loaded once per process."""

    # What each chosen provider's `load` returned, by "<stage>.<id>".
    loaded: dict[str, Any] = field(default_factory=dict)
    silero_session: onnxruntime.InferenceSession | None = None
    smart_turn_session: onnxruntime.InferenceSession | None = None
    # tts.filler.phrase, synthesised at start-up (None when the filler is off).
    filler: bytes | None = None
    load_ms: dict[str, float] = field(default_factory=dict)
    # Each model's warm-up, filled in by `load_in_background`.
    warm_ms: dict[str, float] = field(default_factory=dict)
    # What each stage runs, for /health and reports: {"llm": "llama_cpp SmolLM2-..."}.
    running: dict[str, str] = field(default_factory=dict)

    def get(self, spec: ProviderSpec) -> Any:
        """The shared model of `spec` (None for providers without one)."""
        return self.model(spec.stage, spec.id)

    def model(self, stage: Stage, provider: str) -> Any:
        """The shared model of `<stage>.provider: <provider>`, if it was loaded."""
        return self.loaded.get(f"{stage}.{provider}")

    @property
    def stt(self) -> WhisperEngine:
        """The shared Whisper engine (the one STT provider with a shared model today)."""
        engines = [m for key, m in self.loaded.items() if key.startswith("stt.")]
        if not engines:
            raise LookupError("no STT model was loaded (SharedModels.load with stages=('stt',))")
        engine: WhisperEngine = engines[0]
        return engine

    @classmethod
    def load(cls, settings: Settings, stages: tuple[Stage, ...] = STAGES) -> SharedModels:
        """Load what resolved `settings` need for `stages`; ConfigError names what is missing.

        With every stage, the VAD and turn sessions and the filler phrase come too (a
        server); `voicebot chat` or `say` load one stage alone. The models load side by side.
        """
        providers.check(settings, stages)
        models = cls()
        jobs: dict[str, Callable[[], Any]] = {}
        for stage in stages:
            names = []
            for spec in providers.chosen(settings, stage):
                names.append(f"{spec.id} {spec.describe(settings)}".strip())
                if spec.load is not None:
                    jobs[f"{stage}.{spec.id}"] = functools.partial(spec.load, settings)
            models.running[stage] = " + ".join(names)
        server = stages == STAGES
        if server:
            from voicebot.audio.sessions import load_silero_session, load_smart_turn_session

            jobs["silero"] = load_silero_session
            if settings.turn.smart_turn:
                jobs["smart_turn"] = load_smart_turn_session
        loaded = models._side_by_side(jobs, models.load_ms, "model loaded")
        models.silero_session = loaded.pop("silero", None)
        models.smart_turn_session = loaded.pop("smart_turn", None)
        models.loaded = loaded
        if server:
            from voicebot.providers.tts.stage import filler_audio

            models.filler = filler_audio(settings, models)
        return models

    @staticmethod
    def _side_by_side(
        jobs: dict[str, Callable[[], Any]], times_ms: dict[str, float], done: str | None = None
    ) -> dict[str, Any]:
        """Run `jobs` in threads of their own: their results, and each one's time in `times_ms`.

        The models are independent and most of a load or warm-up is native code that
        releases the GIL (file reading, ONNX Runtime, CTranslate2 and llama.cpp set-up and
        inference), so one model's load overlaps another's instead of queueing behind it.
        The first failing job's error is raised once every job has finished.
        """
        took: dict[str, float] = {}

        def timed(name: str, job: Callable[[], Any]) -> Any:
            start = time.perf_counter()
            result = job()
            took[name] = (time.perf_counter() - start) * 1000
            if done is not None:
                logger.bind(model=name, load_ms=round(took[name])).info(done)
            return result

        if not jobs:
            return {}
        with ThreadPoolExecutor(len(jobs), thread_name_prefix="voicebot-models") as pool:
            futures = {name: pool.submit(timed, name, job) for name, job in jobs.items()}
        times_ms.update((name, took[name]) for name in jobs if name in took)
        return {name: future.result() for name, future in futures.items()}

    def warm(self) -> dict[str, float]:
        """Run each model once so the first real turn pays no allocation or compile costs."""
        jobs: dict[str, Callable[[], Any]] = {}
        for key, model in self.loaded.items():
            stage, provider = key.split(".", 1)
            spec = providers.get(stage, provider)  # type: ignore[arg-type]
            if spec.warm is not None:
                jobs[key] = functools.partial(spec.warm, model)
        if self.silero_session is not None or self.smart_turn_session is not None:
            jobs["turn"] = self._warm_turn
        timings: dict[str, float] = {}
        self._side_by_side(jobs, timings)
        logger.bind(**{f"{k}_ms": round(v) for k, v in timings.items()}).info("models warm")
        return timings

    @classmethod
    def load_in_background(cls, settings: Settings) -> Future[SharedModels]:
        """`load` and `warm` a server's models on a thread of their own, starting now.

        `voicebot serve` starts this before it imports the server (FastAPI, Pipecat,
        ~2 s on 2 cores), so the imports overlap the loads, whose native parts (ONNX
        Runtime, CTranslate2, llama.cpp) release the GIL. The thread is a daemon: a
        server that fails to start does not wait for it.
        """
        future: Future[SharedModels] = Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                models = cls.load(settings)
                models.warm_ms = models.warm()
            except BaseException as e:  # handed to whoever awaits the future
                future.set_exception(e)
            else:
                future.set_result(models)

        threading.Thread(target=run, name="voicebot-models-load", daemon=True).start()
        return future

    def _warm_turn(self) -> None:
        if self.silero_session is not None:
            window = np.zeros((1, 576), dtype=np.float32)
            state = np.zeros((2, 1, 128), np.float32)
            self.silero_session.run(None, {"input": window, "state": state, "sr": np.array(16000)})
        if self.smart_turn_session is not None:
            features = np.zeros((1, 80, 800), dtype=np.float32)
            self.smart_turn_session.run(None, {"input_features": features})
