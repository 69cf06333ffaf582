"""A Hugging Face transformers LLM (torch, CPU or GPU) streaming tokens into the pipeline."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voicebot import model_files
from voicebot.errors import ModelNotFoundError
from voicebot.providers.llm.local import Emit, LocalLLMService, ModelQueue, reply_options
from voicebot.providers.spec import ProviderSpec

if TYPE_CHECKING:
    from voicebot.config import Settings


@dataclass
class TransformersModel:
    """A tokenizer and causal LM loaded once per process, with the lock that serialises them."""

    tokenizer: Any
    model: Any
    device: str
    name: str
    lock: threading.Lock
    compute_nice: int = 0
    # Sessions' generations, first come first served (see ModelQueue).
    queue: ModelQueue = field(init=False)

    def __post_init__(self) -> None:
        self.queue = ModelQueue(self.name, self.compute_nice)

    @classmethod
    def load(cls, path: Path, device: str, compute_nice: int = 0) -> TransformersModel:
        """Load a GGUF file (dequantised by transformers) or a model folder; fp16/bf16 on GPU."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if device == "cuda":
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        else:
            dtype = torch.float32
        where: dict[str, Any] = (
            {"pretrained_model_name_or_path": str(path.parent), "gguf_file": path.name}
            if path.suffix == ".gguf"
            else {"pretrained_model_name_or_path": str(path)}
        )
        tokenizer = AutoTokenizer.from_pretrained(**where, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(**where, dtype=dtype, local_files_only=True)
        model.to(device).eval()  # type: ignore[arg-type]
        return cls(tokenizer, model, device, path.stem, threading.Lock(), compute_nice)


class TransformersLLMService(LocalLLMService):
    """Streams replies from a shared transformers model through Pipecat's LLM base.

    Generation runs in a worker thread (`model.generate` with a TextIteratorStreamer);
    pieces reach the event loop as they decode. An interruption sets a stopping
    criterion the model checks after every token, so the model is freed at once.
    """

    def __init__(self, *, model: TransformersModel, **kwargs: Any) -> None:
        super().__init__(model_name=model.name, queue=model.queue, **kwargs)
        self._shared = model

    def _generate(self, messages: list[dict[str, Any]], emit: Emit, stop: threading.Event) -> bool:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        class Stopped(StoppingCriteria):
            def __call__(self, *_: Any, **__: Any) -> bool:
                return stop.is_set()

        shared = self._shared
        max_tokens = self._settings.max_tokens
        temperature = self._settings.temperature
        sampling = isinstance(temperature, float) and temperature > 0
        with shared.lock:
            inputs = shared.tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
            ).to(shared.device)
            streamer = TextIteratorStreamer(
                shared.tokenizer, skip_prompt=True, skip_special_tokens=True
            )
            limit = max_tokens if isinstance(max_tokens, int) else 80
            options: dict[str, Any] = {
                **inputs,
                "streamer": streamer,
                "max_new_tokens": limit,
                "do_sample": sampling,
                "repetition_penalty": self.repeat_penalty,
                "stopping_criteria": StoppingCriteriaList([Stopped()]),
                "pad_token_id": shared.tokenizer.eos_token_id,
            }
            if sampling:
                options["temperature"] = temperature
            output: list[Any] = []
            worker = threading.Thread(
                target=lambda: output.append(
                    torch.inference_mode()(shared.model.generate)(**options)
                )
            )
            worker.start()
            for piece in streamer:
                if piece:
                    emit(piece)
            worker.join()
        if stop.is_set() or not output:
            return False
        written = output[0][0, inputs["input_ids"].shape[-1] :]
        return len(written) >= limit and int(written[-1]) != shared.tokenizer.eos_token_id


def model_path(settings: Settings) -> Path:
    """A GGUF file or model folder for transformers (default: the bundled GGUF)."""
    path = settings.llm.transformers.model_path
    if path is None:
        return model_files.gguf_file(None, "llm.transformers.model_path")
    if not path.exists():
        raise ModelNotFoundError(
            f"llm.transformers.model_path={path} does not exist; point it at a GGUF file "
            "or a model folder on disk"
        )
    return path


def _check(settings: Settings) -> None:
    model_path(settings)


def _warm(shared: TransformersModel) -> None:
    with shared.lock:
        inputs = shared.tokenizer("Hi", return_tensors="pt").to(shared.device)
        shared.model.generate(**inputs, max_new_tokens=2, do_sample=False)


def _build(settings: Settings, model: TransformersModel) -> TransformersLLMService:
    return TransformersLLMService(model=model, **reply_options(settings))


SPEC = ProviderSpec(
    id="transformers",
    stage="llm",
    extra="transformers",
    requires=("transformers", "torch"),
    check=_check,
    load=lambda settings: TransformersModel.load(
        model_path(settings),
        "cuda" if settings.llm.transformers.device == "cuda" else "cpu",
        settings.server.compute_nice,
    ),
    warm=_warm,
    build=_build,
    describe=lambda settings: model_path(settings).stem,
)
