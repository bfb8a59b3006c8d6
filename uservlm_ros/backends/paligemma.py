"""The PaliGemma 2 (User-VLM) responder: transformers model + peft LoRA / MoLE adapters."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from uservlm_ros.backends.vlm import BASE_ADAPTER, GenerationRequest, GenerationResult, VlmOptions
from uservlm_ros.core.errors import ConfigError, ModelLoadError, UservlmError

if TYPE_CHECKING:  # fast_decode imports torch, which this module imports only when it loads
    from uservlm_ros.backends.fast_decode import DecodeOutput


def resolve_device(device: str, dtype: str) -> tuple[Any, Any]:
    """(torch.device, torch.dtype) for the `model.device` / `model.dtype` parameters."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(f"model.device is {device!r} but this machine has no CUDA device")
    resolved = torch.device(device)
    if dtype == "auto":
        dtype = "bfloat16" if resolved.type == "cuda" else "float32"
    try:
        return resolved, getattr(torch, dtype)
    except AttributeError as error:
        raise ConfigError(f"unknown model.dtype {dtype!r}") from error


class PaliGemmaBackend:
    """PaliGemma 2 (SigLIP + Gemma 2) from transformers, with named peft LoRA adapters.

    Weights come from `options.path` (a folder, or a hub id found in the local cache: nothing is
    downloaded, `local_files_only=True`). Greedy decoding.
    """

    def __init__(self, options: VlmOptions, log: Callable[[str], None] = print) -> None:
        self.options = options
        self._log = log
        self.model: Any = None  # the PaliGemma module (LoRA layers injected when adapters exist)
        self._peft: Any = None  # the PeftModel wrapper, for switching adapters
        self._mole_adapter = ""  # the adapter whose MoLE experts wrap the MLPs, if any
        self.processor: Any = None
        self._decoder: Any = None
        self.device: Any = None
        self.dtype: Any = None
        self.model_name = Path(options.path.rstrip("/")).name or options.path

    @property
    def adapters(self) -> tuple[str, ...]:
        return (BASE_ADAPTER, *self.options.adapters)

    def load(self) -> None:
        import torch
        from transformers import PaliGemmaForConditionalGeneration, PaliGemmaProcessor

        if not self.options.path:
            raise ModelLoadError(
                "no VLM weights configured: set model.path to a User-VLM / PaliGemma-2 folder "
                "(or a hub id in the local Hugging Face cache), or use responder.backend:=fallback"
            )
        self.device, self.dtype = resolve_device(self.options.device, self.options.dtype)
        source = self.options.path
        try:
            self.processor = PaliGemmaProcessor.from_pretrained(source, local_files_only=True)
            model = PaliGemmaForConditionalGeneration.from_pretrained(
                source, local_files_only=True, dtype=self.dtype
            )
        except Exception as error:  # transformers, safetensors, json, torch: no common type
            where = "folder" if Path(source).is_dir() else "hub id (local cache only)"
            reason = " ".join(f"{type(error).__name__}: {error}".split())
            raise ModelLoadError(
                f"cannot load the VLM from {source!r} ({where}): {reason}. Download it on a "
                f"machine with internet (`hf download {source}` or `huggingface-cli download`), "
                "then copy the folder here and set model.path to it"
            ) from error
        model.to(self.device).eval()
        if self.options.adapters:
            model = self._load_adapters(model)
        else:
            self.model = model
        self._decoder = None
        if self.options.fast_decode:
            from uservlm_ros.backends.fast_decode import GreedyDecoder

            compile_step = self.device.type == "cuda" and hasattr(torch, "compile")
            self._decoder = GreedyDecoder(self.model, compile_step=compile_step)
        self._log(
            f"loaded PaliGemma {self.model_name} on {self.device} ({self.dtype}), adapters: "
            f"{', '.join(self.adapters)}; decode: "
            + (
                "model.generate"
                if self._decoder is None
                else "static cache + CUDA graphs"
                if self._decoder.compiled
                else "static cache (eager)"
            )
        )

    def _load_adapters(self, model: Any) -> Any:
        from peft import PeftModel

        for name, path in self.options.adapters.items():
            if not (Path(path) / "adapter_config.json").is_file():
                raise ModelLoadError(
                    f"LoRA adapter {name!r}: {path}/adapter_config.json not found (a peft "
                    "adapter folder, as save_pretrained writes it, is expected)"
                )
        items = list(self.options.adapters.items())
        first_name, first_path = items[0]
        self._peft = PeftModel.from_pretrained(
            model, first_path, adapter_name=first_name, is_trainable=False
        )
        for name, path in items[1:]:
            self._peft.load_adapter(path, adapter_name=name, is_trainable=False)
        self.model = self._peft.base_model.model
        self._load_mole_experts()
        self._peft.to(self.device).eval()
        return self.model

    def _load_mole_experts(self) -> None:
        """A MoLE adapter (`uservlm train sft` with MoLE) is a peft adapter for attention plus
        routed experts on the MLPs; the experts run only while that adapter is selected."""
        from uservlm_ros.backends import mole

        moles = [
            name for name, path in self.options.adapters.items() if mole.is_mole_adapter(Path(path))
        ]
        if len(moles) > 1:
            raise ModelLoadError(
                f"adapters {moles} are all MoLE: one MoLE adapter per responder "
                "(their experts would wrap the same MLPs)"
            )
        if moles:
            mole.load_mole(self.model, Path(self.options.adapters[moles[0]]))
            self._mole_adapter = moles[0]

    def responder_id(self, adapter: str = "") -> str:
        return f"paligemma:{self.model_name}@{self._adapter_name(adapter)}"

    def _adapter_name(self, adapter: str) -> str:
        return adapter or self.options.default_adapter or BASE_ADAPTER

    def warm_up(self) -> None:
        image = np.zeros((64, 64, 3), dtype=np.uint8)
        prompt = "<image> <|im_start|>USER: Hello<|im_end|> ASSISTANT: "
        for adapter in self.adapters:
            self.generate(GenerationRequest(image, prompt, 2, adapter))

    def generate(self, request: GenerationRequest) -> GenerationResult:
        if self.model is None:
            raise UservlmError("the VLM is not loaded")
        if request.image is None:
            raise UservlmError("PaliGemma needs a camera image")
        adapter = self._adapter_name(request.adapter)
        if adapter not in self.adapters:
            raise UservlmError(f"unknown adapter {adapter!r}; loaded: {', '.join(self.adapters)}")
        started = time.perf_counter()
        inputs = self._inputs(request.image, request.prompt)
        preprocess_ms = (time.perf_counter() - started) * 1e3
        tokenizer = self.processor.tokenizer

        def tokens_to_text(tokens: list[int]) -> str:
            return tokenizer.decode(tokens, skip_special_tokens=True).strip()

        def stream(tokens: list[int]) -> None:
            if request.on_token is not None:
                request.on_token(tokens_to_text(tokens), len(tokens))

        with self._adapter(adapter):
            output = self._run(inputs, request, stream)
        return GenerationResult(
            text=tokens_to_text(output.tokens),
            responder=self.responder_id(adapter),
            prompt_tokens=output.prompt_tokens,
            new_tokens=len(output.tokens),
            finish_reason=output.finish_reason,
            timings_ms={
                "preprocess": preprocess_ms,
                "first_token": output.first_token_s * 1e3,
                "decode": output.decode_s * 1e3,
            },
        )

    def _inputs(self, image: np.ndarray, prompt: str) -> dict[str, Any]:
        batch = self.processor(images=image, text=prompt, return_tensors="pt")
        inputs = {k: v.to(self.device) for k, v in batch.items() if k != "labels"}
        inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        return inputs

    def _eos_ids(self) -> list[int]:
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = self.processor.tokenizer.eos_token_id
        return list(eos) if isinstance(eos, list | tuple) else [eos]

    def _run(
        self,
        inputs: dict[str, Any],
        request: GenerationRequest,
        stream: Callable[[list[int]], None],
    ) -> DecodeOutput:
        from uservlm_ros.backends.fast_decode import DecodeRequest, plain_generate

        eos_ids = self._eos_ids()
        decode = DecodeRequest(inputs, request.max_new_tokens, eos_ids, stream, request.should_stop)
        if self._decoder is not None:
            return self._decoder.generate(decode)
        return plain_generate(self.model, decode)

    def _adapter(self, adapter: str):
        """A context in which the model runs with `adapter` (or with adapters disabled)."""

        if self._peft is None:
            return nullcontext()
        if self._mole_adapter:
            from uservlm_ros.backends.mole import set_mole_enabled

            set_mole_enabled(self.model, adapter == self._mole_adapter)
        if adapter == BASE_ADAPTER:
            return self._peft.disable_adapter()
        self._peft.set_adapter(adapter)
        return nullcontext()
