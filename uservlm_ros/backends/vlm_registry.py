"""The responder backends by name (the node's `responder.backend` parameter): RESPONDERS.

Each backend's options dataclass holds its parameters (`model.*`, `server.*`,
`responder.fallback_word_delay_s`); the node's Params are `RESPONDERS.params()`. A factory takes
the options and the node's info and warning loggers, and imports its heavy packages itself: the
fallback must work on a machine without torch or transformers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from uservlm_ros.backends.fallback_responder import FallbackOptions, FallbackResponder
from uservlm_ros.backends.openai_responder import ServerOptions
from uservlm_ros.backends.vlm import VlmBackend, VlmOptions
from uservlm_ros.core.registry import Registry

Log = Callable[[str], None]


def _paligemma(options: VlmOptions, log: Log, warn: Log) -> VlmBackend:
    from uservlm_ros.backends.paligemma import PaliGemmaBackend

    return PaliGemmaBackend(options, log)


def _fallback(options: FallbackOptions, log: Log, warn: Log) -> VlmBackend:
    return FallbackResponder(options)


def _openai(options: ServerOptions, log: Log, warn: Log) -> VlmBackend:
    from uservlm_ros.backends.openai_responder import OpenAIResponder

    templates = FallbackOptions(options.word_delay_s)
    return OpenAIResponder(
        options, log, warn, FallbackResponder(templates) if options.fallback else None
    )


# Parameters are named in full (model.*, server.*, ...): the backends' groups differ.
RESPONDERS: Registry[VlmBackend] = Registry("responder backend", "")
RESPONDERS.add(
    "paligemma",
    _paligemma,
    VlmOptions,
    "the User-VLM (PaliGemma 2) in this process (needs model.path)",
)
RESPONDERS.add(
    "fallback",
    _fallback,
    FallbackOptions,
    "profile-aware templates (never a VLM: every Response says responder=fallback-template)",
)
RESPONDERS.add(
    "openai",
    _openai,
    ServerOptions,
    "a model served by vLLM or another OpenAI-compatible server (SGLang, TGI, llama.cpp, "
    "Ollama), see server.*",
)


def choose_backend(values: Mapping[str, Any]) -> tuple[str, str]:
    """(the backend to build, a warning to log or "") from the node's parameter values: paligemma
    without weights becomes the fallback when `responder.fallback_without_model` allows it."""
    name = values["responder.backend"]
    if name == "fallback":
        return name, (
            "responder.backend is 'fallback': answers come from TEMPLATES, not from a VLM "
            "(every Response says responder=fallback-template)"
        )
    if (
        name == "paligemma"
        and not values["model.path"]
        and values["responder.fallback_without_model"]
    ):
        return "fallback", (
            f"no VLM weights (model.path is empty): answering with the FALLBACK responder, "
            f"templates instead of {name} (every Response says responder=fallback-template); "
            "set model.path (launch argument vlm_model) for the User-VLM"
        )
    return name, ""


def start_backend(name: str, values: Mapping[str, Any], log: Log, warn: Log) -> VlmBackend:
    """The backend `name` built from the node's parameter values, loaded and, with
    `model.warmup`, warmed up; raises UservlmError (ConfigError, ModelLoadError) when it cannot."""
    backend = RESPONDERS.create(name, values, log, warn)
    started = time.perf_counter()
    backend.load()
    if values["model.warmup"]:
        backend.warm_up()
        log(f"warm-up done in {time.perf_counter() - started:.1f} s")
    return backend
