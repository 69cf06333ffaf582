"""In-process llama.cpp LLM service: streams tokens from a shared GGUF model into the pipeline.

Pipecat has no llama.cpp service; this one is a `LocalLLMService` (Pipecat's LLM base),
so context aggregation, history and interruptions behave as for any Pipecat LLM.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from loguru import logger

from voicebot import model_files
from voicebot.errors import ConfigError
from voicebot.providers.llm.local import (
    Emit,
    LocalLLMService,
    ModelQueue,
    cpu_threads,
    llm_decode_threads,
    reply_options,
)
from voicebot.providers.spec import ProviderSpec
from voicebot.threads import FIRST_AUDIO
from voicebot.turns.sentence_end import unpunctuated

if TYPE_CHECKING:
    from llama_cpp import Llama
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    from voicebot.config import Settings

REBUILD_HINT = (
    "rebuild it portably with deployment/build_llama_cpp.sh (./quick_start.sh does), "
    "or see README_PIPECAT.md#llamacpp-builds"
)


@dataclass(frozen=True)
class LlamaBuild:
    """How the installed llama.cpp was compiled, from `llama_print_system_info()`."""

    system_info: str
    features: dict[str, bool]

    @classmethod
    def installed(cls) -> LlamaBuild:
        import llama_cpp

        info = llama_cpp.llama_print_system_info()
        text = info.decode(errors="replace") if isinstance(info, bytes) else str(info)
        return cls.parse(text)

    @classmethod
    def parse(cls, text: str) -> LlamaBuild:
        features = {
            name: value == "1" for name, value in re.findall(r"([A-Z0-9_]+) = ([01])", text)
        }
        return cls(text.strip(), features)

    @property
    def amx(self) -> bool:
        """AMX kernels compiled in: llama.cpp then repacks weights for them and, on Intel
        CPUs with AMX, can segfault in ggml_backend_amx_mul_mat (llama.cpp issue 20824)."""
        return any(on for name, on in self.features.items() if name.startswith("AMX"))

    def missing_on(self, cpu_flags: set[str]) -> list[str]:
        """Instruction sets compiled in that this CPU lacks (the wheel would die with SIGILL)."""
        needs = {"AVX": "avx", "AVX2": "avx2", "F16C": "f16c", "FMA": "fma", "AVX512": "avx512f"}
        needs |= {"AVX512_VNNI": "avx512_vnni", "AVX_VNNI": "avx_vnni", "AMX_INT8": "amx_int8"}
        return [
            name
            for name, flag in needs.items()
            if self.features.get(name) and flag not in cpu_flags
        ]


ExtraBuffers = Literal["if_safe", "on", "off"]


def use_extra_buffers(setting: ExtraBuffers, build: LlamaBuild) -> bool:
    """Whether to let llama.cpp repack weights into extra buffer types (AMX and others)."""
    if setting != "if_safe":
        return setting == "on"
    return not build.amx


_default_params_lock = threading.Lock()


@contextlib.contextmanager
def _without_extra_buffers() -> Iterator[None]:
    """Make `Llama()` load with `use_extra_bufts = False`: weights stay in plain CPU buffers.

    llama-cpp-python builds its model parameters from `llama_model_default_params()` and
    offers no argument for this field, so the default is adjusted while the model loads.
    """
    from llama_cpp import llama_cpp as native

    original = native.llama_model_default_params

    def defaults() -> Any:
        params = original()
        params.use_extra_bufts = False
        return params

    with _default_params_lock:
        native.llama_model_default_params = defaults
        try:
            yield
        finally:
            native.llama_model_default_params = original


@contextlib.contextmanager
def _logits_kept_at(llama: Llama, index: int) -> Iterator[None]:
    """Have `llama.eval` keep the logits of the batch's token `index` as well as the last.

    llama-cpp-python asks llama.cpp for the last token's logits only; the batch it fills
    (`Llama._batch`, a LlamaBatch) is marked while the one batch is evaluated.
    """
    filled = llama._batch
    fill = filled.set_batch

    def set_batch(batch: Any, n_past: int, logits_all: bool) -> None:
        fill(batch=batch, n_past=n_past, logits_all=logits_all)
        filled.batch.logits[index] = True

    filled.set_batch = set_batch  # type: ignore[method-assign]
    try:
        yield
    finally:
        del filled.set_batch


def load_llama(
    path: Path,
    *,
    n_ctx: int,
    n_threads: int,
    gpu_layers: int,
    extra_buffers: ExtraBuffers = "if_safe",
) -> Llama:
    """Load a GGUF so that it runs on this CPU whichever way llama.cpp was built.

    `n_threads` write the reply; every core reads the prompt (`n_threads_batch`).
    """
    from llama_cpp import Llama

    build = LlamaBuild.installed()
    plain = not use_extra_buffers(extra_buffers, build)
    if plain and build.amx and extra_buffers == "if_safe":
        logger.bind(hint=REBUILD_HINT).warning(
            "llama.cpp was built with AMX, whose weight repacking can crash on Intel CPUs: "
            "loading without extra buffer types (slower prompt processing)"
        )
    with _without_extra_buffers() if plain else contextlib.nullcontext():
        return Llama(
            model_path=str(path),
            n_gpu_layers=gpu_layers,
            n_ctx=n_ctx,
            n_threads=n_threads,
            n_threads_batch=cpu_threads(),
            verbose=False,
        )


@dataclass
class LlamaCppModel:
    """A llama.cpp model loaded once per process, with the lock that serialises its use.

    A `Llama` instance is not thread-safe: generations from concurrent sessions take
    turns on `lock`.
    """

    llama: Llama
    name: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    compute_nice: int = 0
    # Sessions' generations, first come first served (see ModelQueue).
    queue: ModelQueue = field(init=False)

    # The chat template and the tokens that end a sentence, read once (sentence ends).
    _formatter: Jinja2ChatFormatter | None = field(init=False, default=None)
    _sentence_end_ids: list[int] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.queue = ModelQueue(self.name, self.compute_nice)

    def sentence_end_probability(self, messages: list[dict[str, Any]]) -> float | None:
        """How likely the model's next token after the last message's words, without
        their final punctuation, ends a sentence; None without a chat template.

        The reply's whole prompt is read in one pass, with the next-token probabilities
        kept at the last word as well as at the end: the reply to `messages` that follows
        finds its prompt in llama.cpp's KV cache with its logits, and samples its first
        token at once. The judgement then costs no read of its own (a second pass cost
        ~40 ms on 2 vCPU). Where the prompt's tokens do not begin with the words' tokens,
        only the words are read, and the reply reads the rest. Call it holding `lock`.
        """
        from llama_cpp import Llama

        prompts = self._prompts(messages)
        if prompts is None:
            return None
        llama = self.llama
        words = llama.tokenize(prompts[0].encode(), add_bos=True, special=True)
        tokens = llama.tokenize(prompts[1].encode(), add_bos=True, special=True)
        at = len(words) - 1  # the last word: its logits give the figure
        if tokens[: len(words)] != words or len(tokens) - at > llama.n_batch:
            tokens = words
        # What the cache holds already is kept; the last word is read again at least.
        cached = llama.input_ids[: llama.n_tokens].tolist()
        kept = min(Llama.longest_token_prefix(cached, tokens), at)
        llama.n_tokens = kept
        # The last batch holds the last word and everything after it.
        last = max(kept, len(tokens) - llama.n_batch)
        if last > kept:
            llama.eval(tokens[kept:last])
        with _logits_kept_at(llama, at - last):
            llama.eval(tokens[last:])
        return self.sentence_end_odds(at - last)

    def sentence_end_odds(self, index: int) -> float:
        """How likely the next token after the last batch's token `index` (-1: the last)
        ends a sentence, from the logits llama.cpp kept for it."""
        import numpy as np
        from llama_cpp import llama_get_logits_ith

        llama = self.llama
        logits = np.ctypeslib.as_array(llama_get_logits_ith(llama.ctx, index), (llama.n_vocab(),))
        odds = np.exp(logits - logits.max())
        return float(odds[self._sentence_end_tokens()].sum() / odds.sum())

    def _prompts(self, messages: list[dict[str, Any]]) -> tuple[str, str] | None:
        """The chat's prompt up to the last message's words without their final
        punctuation, and the whole prompt the reply reads (None: no chat template)."""
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        llama = self.llama
        if self._formatter is None:
            template = llama.metadata.get("tokenizer.chat_template")
            if not template:
                return None
            special = [
                llama.detokenize([t], special=True).decode(errors="replace") if t != -1 else ""
                for t in (llama.token_eos(), llama.token_bos())
            ]
            self._formatter = Jinja2ChatFormatter(
                template=template, eos_token=special[0], bos_token=special[1]
            )
        words = messages[-1]["content"]
        prompt = self._formatter(messages=messages).prompt  # type: ignore[arg-type]
        at, judged = prompt.rfind(words), unpunctuated(words)
        if at < 0 or not judged:
            return None
        return prompt[:at] + judged, prompt

    def _sentence_end_tokens(self) -> list[int]:
        if not self._sentence_end_ids:
            ends = set()
            for text in (".", "?", "!", "...", "…", '."', '?"', '!"'):
                for spaced in (text, " " + text):
                    ids = self.llama.tokenize(spaced.encode(), add_bos=False, special=False)
                    if len(ids) == 1:
                        ends.add(ids[0])
            self._sentence_end_ids = sorted(ends)
        return self._sentence_end_ids


class LlamaCppLLMService(LocalLLMService):
    """Streams chat completions from a llama.cpp model shared by every session.

    llama.cpp reuses the KV cache for the longest common prompt prefix (the system prompt
    and earlier turns of the same session) and re-evaluates the rest, so switching between
    unrelated conversations stays correct. An interruption stops the generating thread at
    the next token, releasing the model's lock.
    """

    judges_sentence_ends = True

    def __init__(self, *, model: LlamaCppModel, **kwargs: Any) -> None:
        super().__init__(model_name=model.name, queue=model.queue, **kwargs)
        self._model = model

    def _sentence_end_probability(self, messages: list[dict[str, Any]]) -> float | None:
        with self._model.lock:
            return self._model.sentence_end_probability(messages)

    def _generate(self, messages: list[dict[str, Any]], emit: Emit, stop: threading.Event) -> bool:
        max_tokens = self._settings.max_tokens
        temperature = self._settings.temperature
        with self._model.lock:
            stream: Any = self._model.llama.create_chat_completion(
                messages=messages,  # type: ignore[arg-type]
                max_tokens=max_tokens if isinstance(max_tokens, int) else None,
                temperature=temperature if isinstance(temperature, float) else 0.3,
                repeat_penalty=self.repeat_penalty,
                stream=True,
            )
            for chunk in stream:
                if stop.is_set():
                    return False
                choice = chunk["choices"][0]
                text = choice["delta"].get("content")
                if text:
                    emit(text)
                    # Yield the cores while a reply's first audio is synthesised.
                    FIRST_AUDIO.wait()
                if choice.get("finish_reason") == "length":
                    return True
        return False


def _model_file(settings: Settings) -> Path:
    return model_files.gguf_file(settings.llm.llama_cpp.model_path, "llm.llama_cpp.model_path")


def _check(settings: Settings) -> None:
    _model_file(settings)
    llm, n_ctx = settings.llm, settings.llm.llama_cpp.n_ctx
    # The history budget, the reply and the system prompt must fit the window together.
    if llm.max_history_tokens + llm.max_tokens + 256 > n_ctx:
        raise ConfigError(
            f"llm.max_history_tokens ({llm.max_history_tokens}) + llm.max_tokens "
            f"({llm.max_tokens}) + 256 for the system prompt exceed llm.llama_cpp.n_ctx "
            f"({n_ctx}); raise llm.llama_cpp.n_ctx or lower the others"
        )


def _load(settings: Settings) -> LlamaCppModel:
    section = settings.llm.llama_cpp
    path = _model_file(settings)
    llama = load_llama(
        path,
        n_ctx=section.n_ctx,
        n_threads=llm_decode_threads(section.n_threads),
        gpu_layers=section.gpu_layers if isinstance(section.gpu_layers, int) else 0,
        extra_buffers=section.extra_buffers,
    )
    return LlamaCppModel(llama, path.stem, compute_nice=settings.server.compute_nice)


def _warm(model: LlamaCppModel) -> None:
    with model.lock:
        for _ in model.llama.create_chat_completion(
            messages=[{"role": "user", "content": "Hi"}], max_tokens=4, stream=True
        ):
            pass


def _build(settings: Settings, model: LlamaCppModel) -> LlamaCppLLMService:
    return LlamaCppLLMService(model=model, **reply_options(settings))


def _vram_mib(settings: Settings) -> int:
    # Weights plus KV cache and scratch at the default context.
    return int(_model_file(settings).stat().st_size / 2**20 * 1.2)


SPEC = ProviderSpec(
    id="llama_cpp",
    stage="llm",
    extra="llama-cpp",
    requires=("llama_cpp",),
    check=_check,
    load=_load,
    warm=_warm,
    build=_build,
    describe=lambda settings: _model_file(settings).stem,
    vram_mib=_vram_mib,
)
