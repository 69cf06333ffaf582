"""What a provider module tells the rest of voicebot about itself, and where the lists live.

Each provider module exports `SPEC`, a `ProviderSpec`; `providers/{stt,llm,tts}/__init__.py`
list those modules. Central code (checks, model loading, the pipeline's factories, the
CLI's reports) loops over the specs and never names a provider.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from voicebot.errors import ConfigError

if TYPE_CHECKING:
    from pipecat.processors.frame_processor import FrameProcessor

    from voicebot.config import Settings

Stage = Literal["stt", "llm", "tts"]
STAGES: tuple[Stage, ...] = ("stt", "llm", "tts")


def _no_check(_settings: Settings) -> None:
    return None


@dataclass(frozen=True)
class ProviderSpec:
    """One provider: how to check, load, warm and build it.

    `build(settings, model)` makes a session's service; `model` is what `load` returned
    (the process-wide shared model), or None for providers without one (cloud APIs).
    """

    id: str
    stage: Stage
    # The pyproject extra that installs it, and the modules that extra provides.
    extra: str
    requires: tuple[str, ...]
    build: Callable[[Settings, Any], FrameProcessor]
    # Raises ConfigError naming the setting to change (missing files, keys, bad values).
    check: Callable[[Settings], None] = _no_check
    load: Callable[[Settings], Any] | None = None
    warm: Callable[[Any], None] | None = None
    # What it runs, for logs and benchmark reports ("whisper tiny.en", "piper en_US-joe-medium").
    describe: Callable[[Settings], str] = field(default=lambda _s: "")
    # TTS: the rate it speaks at natively, given its loaded model.
    sample_rate: Callable[[Settings, Any], int] | None = None
    # Local TTS: speak one text outside a pipeline -> (PCM16 mono, sample rate); the filler uses it.
    synthesize: Callable[[Settings, Any, str], tuple[bytes, int]] | None = None
    # GPU memory it holds when it runs on the GPU, MiB (for auto-tuning).
    vram_mib: Callable[[Settings], int] | None = None
    # Remote providers: where requests go (keys the process-wide circuit breaker, and
    # brings the stage's deadlines to bear); None for a model running in this process.
    endpoint: Callable[[Settings], str] | None = None

    def check_installed(self) -> None:
        for module in self.requires:
            if importlib.util.find_spec(module.split(".")[0]) is None:
                raise ConfigError(
                    f"{self.stage} uses {self.id} but it is not installed: "
                    f"pip install 'voicebot[{self.extra}]'"
                )


# Provider modules per stage, by dotted path; each is imported only when used.
_MODULES: dict[Stage, list[str]] = {stage: [] for stage in STAGES}
# Specs registered as objects (tests, plugins) or already imported.
_SPECS: dict[Stage, dict[str, ProviderSpec]] = {stage: {} for stage in STAGES}


def add_modules(stage: Stage, modules: list[str]) -> None:
    _MODULES[stage].extend(m for m in modules if m not in _MODULES[stage])


def register(spec: ProviderSpec) -> None:
    """Make `spec` available as `<stage>.provider: <id>` (used by tests and plugins)."""
    _SPECS[spec.stage][spec.id] = spec


def unregister(stage: Stage, provider: str) -> None:
    _SPECS[stage].pop(provider, None)


def _loaded_lists() -> None:
    # The stage packages add their module lists when imported.
    for stage in STAGES:
        importlib.import_module(f"voicebot.providers.{stage}")


def ids(stage: Stage) -> list[str]:
    """Every provider id this build knows for `stage` (imports no provider module)."""
    _loaded_lists()
    names = [module.rsplit(".", 1)[1] for module in _MODULES[stage]]
    return [*names, *(name for name in _SPECS[stage] if name not in names)]


def get(stage: Stage, provider: str) -> ProviderSpec:
    """The spec of `provider`; ConfigError when it is unknown or its extra is missing."""
    _loaded_lists()
    if provider in _SPECS[stage]:
        return _SPECS[stage][provider]
    module = next((m for m in _MODULES[stage] if m.rsplit(".", 1)[1] == provider), None)
    if module is None:
        raise ConfigError(
            f"{stage}.provider={provider!r} is unknown; available: {', '.join(ids(stage))}"
        )
    try:
        spec: ProviderSpec = importlib.import_module(module).SPEC
    except ModuleNotFoundError as e:
        raise ConfigError(
            f"{stage} uses {provider} but {e.name} is not installed: "
            f"pip install 'voicebot[{provider.replace('_', '-')}]'"
        ) from e
    _SPECS[stage][provider] = spec
    return spec


def chosen(settings: Settings, stage: Stage) -> list[ProviderSpec]:
    """The providers a session of `settings` may use in `stage`: primary, then fallback."""
    section = getattr(settings, stage)
    names = [section.provider]
    fallback = getattr(section, "fallback", None)
    if fallback and fallback != section.provider:
        names.append(fallback)
    return [get(stage, name) for name in names]


def check(settings: Settings, stages: tuple[Stage, ...] = STAGES) -> None:
    """Raise ConfigError unless every chosen provider is installed and configured."""
    for stage in stages:
        for spec in chosen(settings, stage):
            spec.check_installed()
            spec.check(settings)
