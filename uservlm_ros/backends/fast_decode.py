"""Greedy decoding with a static KV cache, streamed token by token, cancellable.

`model.generate` re-allocates its cache and re-dispatches the whole Python call stack per token,
which caps decode speed far below what a GPU can do for a 3B model. This loop keeps one static
KV cache per length bucket (re-used across requests, so its tensors never move) and, on CUDA,
runs the one-token decode step through `torch.compile(mode="reduce-overhead")`, i.e. CUDA graphs.
On CPU it runs the same loop eagerly. Under greedy decoding its tokens equal `model.generate`'s
(test_dialogue_backend checks this on a tiny PaliGemma).

Works with any transformers decoder whose forward accepts `past_key_values` and `position_ids`
and whose positions start at `position_offset` (PaliGemma counts positions from 1).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

EOS = "eos"
LENGTH = "length"
CANCELLED = "cancelled"

CACHE_BUCKET = 128  # cache lengths are rounded up to this, so compiled graphs are re-used


@dataclass(frozen=True)
class DecodeRequest:
    """One prompt to decode greedily (batch of 1) and where its tokens stream."""

    inputs: Mapping[str, torch.Tensor]  # the processor's tensors
    max_new_tokens: int
    eos_token_ids: Sequence[int]
    on_token: Callable[[list[int]], None] | None = None  # the new tokens so far, per token
    should_stop: Callable[[], bool] | None = None  # asked per token: True cancels


@dataclass
class DecodeOutput:
    tokens: list[int]  # the new tokens, without the prompt (and without the eos token)
    finish_reason: str  # EOS, LENGTH or CANCELLED
    prompt_tokens: int
    first_token_s: float  # prefill until the first new token is known (time to first token)
    decode_s: float  # the remaining tokens


class GreedyDecoder:
    """Greedy decode loop over a static cache; see the module docstring."""

    def __init__(
        self,
        model: torch.nn.Module,
        compile_step: bool = False,
        position_offset: int = 1,
    ) -> None:
        from transformers import StaticCache

        self.model = model
        self.position_offset = position_offset
        self._static_cache = StaticCache
        self._caches: dict[int, Any] = {}
        self._step = self._decode_step
        self.compiled = False
        if compile_step:
            self._step = torch.compile(self._decode_step, mode="reduce-overhead", fullgraph=False)
            self.compiled = True

    def _cache(self, length: int) -> Any:
        bucket = -(-length // CACHE_BUCKET) * CACHE_BUCKET
        cache = self._caches.get(bucket)
        if cache is None:
            config = self.model.config
            cache = self._static_cache(config=config, max_cache_len=bucket)
            self._caches = {bucket: cache}  # one bucket at a time bounds memory
        else:
            cache.reset()
        return cache

    def _decode_step(self, token: torch.Tensor, position: torch.Tensor, cache: Any) -> torch.Tensor:
        logits = self.model(
            input_ids=token, position_ids=position, past_key_values=cache, use_cache=True
        ).logits
        return logits[:, -1].argmax(-1, keepdim=True)

    @torch.inference_mode()
    def generate(self, request: DecodeRequest) -> DecodeOutput:
        """Greedy tokens for the request's prompt."""
        prompt_len = int(request.inputs["input_ids"].shape[1])
        cache = self._cache(prompt_len + request.max_new_tokens)
        started = time.perf_counter()
        logits = self.model(
            **request.inputs, past_key_values=cache, use_cache=True, logits_to_keep=1
        ).logits
        token = logits[:, -1].argmax(-1, keepdim=True)
        tokens: list[int] = []
        finish = LENGTH
        first_token_s = 0.0
        eos = set(request.eos_token_ids)
        position = torch.empty((1, 1), dtype=torch.long, device=token.device)
        for index in range(request.max_new_tokens):
            value = int(token.item())  # the one host sync per token: streaming needs the id
            if index == 0:
                first_token_s = time.perf_counter() - started
            if value in eos:
                finish = EOS
                break
            tokens.append(value)
            if request.on_token is not None:
                request.on_token(tokens)
            if request.should_stop is not None and request.should_stop():
                finish = CANCELLED
                break
            if index + 1 == request.max_new_tokens:
                break
            position.fill_(prompt_len + index + self.position_offset)
            token = self._step(token, position, cache).clone()
        decode_s = time.perf_counter() - started - first_token_s
        return DecodeOutput(tokens, finish, prompt_len, first_token_s, decode_s)


@torch.inference_mode()
def plain_generate(model: Any, request: DecodeRequest) -> DecodeOutput:
    """The same contract through `model.generate` (greedy): the reference and the fallback."""
    from transformers import StoppingCriteria, StoppingCriteriaList

    prompt_len = int(request.inputs["input_ids"].shape[1])
    eos = set(request.eos_token_ids)
    started = time.perf_counter()
    marks: dict[str, float] = {}
    cancelled = False

    class Streaming(StoppingCriteria):
        def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.Tensor:
            nonlocal cancelled
            marks.setdefault("first", time.perf_counter())
            new = input_ids[0, prompt_len:].tolist()
            if new and new[-1] not in eos:
                if request.on_token is not None:
                    request.on_token(new)
                cancelled = request.should_stop is not None and request.should_stop()
            return torch.full((input_ids.shape[0],), cancelled, device=input_ids.device)

    output = model.generate(
        **request.inputs,
        max_new_tokens=request.max_new_tokens,
        do_sample=False,
        eos_token_id=list(eos),
        stopping_criteria=StoppingCriteriaList([Streaming()]),
    )
    finished = time.perf_counter()
    new = output[0, prompt_len:].tolist()
    finish = CANCELLED if cancelled else LENGTH
    if new and new[-1] in eos:
        new, finish = new[:-1], EOS
    first = marks.get("first", finished) - started
    return DecodeOutput(new, finish, prompt_len, first, finished - started - first)
