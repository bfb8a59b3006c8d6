"""The interface every responder model implements (`VlmBackend`) and the types it exchanges.

A `VlmBackend` loads its weights, warms up, and answers one prompt about one image, streaming
text through `on_token` and stopping when `should_stop()` turns true. Implementations:
paligemma.py (the User-VLM model) and fallback_responder.py (templates); vlm_registry.py maps
the `responder.backend` parameter's names to them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from uservlm_ros.core.errors import ConfigError

BASE_ADAPTER = "base"  # adapters disabled: the model as loaded from model.path
DEFAULT_MAX_NEW_TOKENS = 100  # the User-VLM papers' generation setting

# (text generated so far, number of new tokens so far)
TokenCallback = Callable[[str, int], None]
StopCheck = Callable[[], bool]


@dataclass(frozen=True)
class UserContext:
    """What the responder node knows about the asking user.

    VLM backends ignore it (they see the image; in profile_prompt mode the profile is already in
    the prompt); template responders use it to personalise their answers.
    """

    question: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)  # attribute -> known label


@dataclass
class GenerationResult:
    text: str
    responder: str  # e.g. "paligemma:user-vlm@dpo" or "fallback-template"
    prompt_tokens: int = 0
    new_tokens: int = 0
    finish_reason: str = "eos"  # "eos", "length" or "cancelled"
    timings_ms: dict[str, float] = field(default_factory=dict)  # stage -> duration


class VlmBackend(Protocol):
    """A responder model: see the module docstring."""

    @property
    def adapters(self) -> tuple[str, ...]:
        """Names accepted as `adapter` (always including BASE_ADAPTER)."""
        ...

    def load(self) -> None:
        """Load weights; raises ModelLoadError naming the missing file and how to get it."""
        ...

    def warm_up(self) -> None:
        """Run one short generation so the first real request pays no one-off costs."""
        ...

    def responder_id(self, adapter: str = "") -> str:
        """What Response.responder says for answers with this adapter ("" = the default)."""
        ...

    def generate(
        self,
        image: np.ndarray | None,
        prompt: str,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        adapter: str = "",
        on_token: TokenCallback | None = None,
        should_stop: StopCheck | None = None,
        user: UserContext | None = None,
    ) -> GenerationResult:
        """Answer `prompt` (core/prompt.build_prompt) about `image` (h, w, 3 uint8 RGB)."""
        ...


@dataclass(frozen=True)
class VlmOptions:
    """How to load a VLM (the node's `model.*` parameters)."""

    path: str = ""  # a model folder, or a hub id already in the local Hugging Face cache
    adapters: Mapping[str, str] = field(default_factory=dict)  # name -> peft adapter folder
    default_adapter: str = ""  # "" = BASE_ADAPTER
    device: str = "auto"  # auto, cpu, cuda, cuda:N
    dtype: str = "auto"  # auto (bfloat16 on CUDA, float32 on CPU), float32, bfloat16, float16
    fast_decode: bool = True  # static-cache decode loop, CUDA graphs on CUDA
    warmup: bool = True


def parse_adapters(entries: Sequence[str]) -> dict[str, str]:
    """`["instruct=/path", "dpo=/path"]` -> {name: path}; raises ConfigError."""
    adapters: dict[str, str] = {}
    for entry in entries:
        name, sep, path = entry.partition("=")
        name, path = name.strip(), path.strip()
        if not sep or not name or not path:
            raise ConfigError(f"adapter {entry!r}: expected NAME=PATH, e.g. dpo=/models/dpo")
        if name == BASE_ADAPTER or name in adapters:
            raise ConfigError(f"adapter name {name!r} is reserved or given twice")
        adapters[name] = path
    return adapters
