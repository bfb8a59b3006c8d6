"""The interface every responder model implements (`VlmBackend`) and the types it exchanges.

A `VlmBackend` loads its weights, warms up, and answers one `GenerationRequest` (a prompt about
an image), streaming text through the request's `on_token` and stopping when its `should_stop()`
turns true. Implementations: paligemma.py (the User-VLM model), openai_responder.py (a model on
an inference server) and fallback_responder.py (templates); vlm_registry.py's RESPONDERS maps the
`responder.backend` parameter's names to them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from uservlm_ros.core.errors import ConfigError
from uservlm_ros.core.parameters import check_settings, setting

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


@dataclass(frozen=True)
class GenerationRequest:
    """One answer to generate: `prompt` (core/prompt.build_prompt) about `image` (h, w, 3 uint8
    RGB; None where there is none), and where its text streams while it is generated."""

    image: np.ndarray | None
    prompt: str
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    adapter: str = ""  # "" = the backend's default adapter
    user: UserContext = field(default_factory=UserContext)
    on_token: TokenCallback | None = None  # called per new token
    should_stop: StopCheck | None = None  # polled while generating: True cancels


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

    def generate(self, request: GenerationRequest) -> GenerationResult:
        """Answer the request; raises UservlmError for one it cannot answer (unknown adapter,
        no image where the model needs one)."""
        ...


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


def strings_check(parse: Callable[[list[str]], object]) -> Callable[[list], str | None]:
    """A string[] parameter's check: every entry a string, and `parse` (which raises ConfigError
    or ValueError) accepts the list."""

    def check(value: list) -> str | None:
        if not all(isinstance(v, str) for v in value):
            return "must be a list of strings"
        try:
            parse(value)
        except (ConfigError, ValueError) as error:
            return str(error)
        return None

    return check


@dataclass(frozen=True)
class VlmOptions:
    """How to load a VLM: the `model.*` parameters."""

    path: str = setting("", name="model.path")
    """VLM folder (PaliGemma-2 / User-VLM, save_pretrained layout) or a hub id already in the
    local Hugging Face cache; nothing is downloaded. Empty: see
    responder.fallback_without_model"""
    # NAME=FOLDER entries as the parameter gives them, or {name: folder} in code; kept as a dict.
    adapters: Mapping[str, str] = setting(
        [], name="model.adapters", check=strings_check(parse_adapters)
    )
    """peft LoRA adapters to load, NAME=FOLDER each, e.g. [instruct=/m/instruct, dpo=/m/dpo]; a
    request picks one by name, `base` = adapters disabled"""
    default_adapter: str = setting("", name="model.default_adapter")
    """Adapter used when a request names none; empty = base"""
    device: str = setting("auto", name="model.device")
    """torch device: auto (cuda if available), cpu, cuda, cuda:N"""
    dtype: str = setting(
        "auto", name="model.dtype", choices=("auto", "float32", "bfloat16", "float16")
    )
    """Weights dtype: auto = bfloat16 on CUDA, float32 on CPU"""
    warmup: bool = setting(True, name="model.warmup")
    """Run a short generation per adapter at configure"""
    fast_decode: bool = setting(True, name="model.fast_decode")
    """Own greedy decode loop with a static KV cache (and CUDA graphs on CUDA); false =
    transformers generate (same tokens, slower)"""

    def __post_init__(self) -> None:
        check_with_adapters(self, parse_adapters)
        loaded = (BASE_ADAPTER, *self.adapters)
        if self.default_adapter and self.default_adapter not in loaded:
            raise ConfigError(
                f"model.default_adapter {self.default_adapter!r} is not loaded "
                f"(adapters: {', '.join(loaded)})"
            )


def check_with_adapters(options: Any, parse: Callable[[list[str]], dict[str, str]]) -> None:
    """Check a backend's options (core/parameters.check_settings) whose `adapters` setting is
    given as the parameter's entries or, in code, as a {name: value} mapping; the options then
    keep the mapping `parse` makes of the entries."""
    if isinstance(options.adapters, Mapping):
        entries = [f"{name}={value}" for name, value in options.adapters.items()]
        object.__setattr__(options, "adapters", entries)
    check_settings(options)
    object.__setattr__(options, "adapters", parse(options.adapters))
