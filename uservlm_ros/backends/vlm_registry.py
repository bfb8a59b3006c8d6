"""The responder backends by name (the node's `responder.backend` parameter), in one table."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from uservlm_ros.backends.vlm import VlmBackend, VlmOptions
from uservlm_ros.core.errors import ConfigError


@dataclass(frozen=True)
class BackendSettings:
    """What a factory may need besides the model options."""

    log: Callable[[str], None] = print
    warn: Callable[[str], None] = print
    word_delay_s: float = 0.0  # fallback templates: pause between streamed words
    server: object = None  # openai: openai_responder.ServerOptions


def _paligemma(options: VlmOptions, settings: BackendSettings) -> VlmBackend:
    from uservlm_ros.backends.paligemma import PaliGemmaBackend

    return PaliGemmaBackend(options, settings.log)


def _fallback(options: VlmOptions, settings: BackendSettings) -> VlmBackend:
    from uservlm_ros.backends.fallback_responder import FallbackResponder

    return FallbackResponder(settings.word_delay_s)


def _openai(options: VlmOptions, settings: BackendSettings) -> VlmBackend:
    from uservlm_ros.backends.fallback_responder import FallbackResponder
    from uservlm_ros.backends.openai_responder import OpenAIResponder, ServerOptions

    server = settings.server or ServerOptions()
    fallback = FallbackResponder(settings.word_delay_s) if server.fallback else None
    return OpenAIResponder(server, settings.log, settings.warn, fallback)


# Imported lazily: the fallback must work on a machine without torch or transformers.
VLM_BACKENDS: dict[str, Callable[[VlmOptions, BackendSettings], VlmBackend]] = {
    "paligemma": _paligemma,
    "fallback": _fallback,
    "openai": _openai,  # any OpenAI-compatible server: vLLM, SGLang, TGI, llama.cpp, Ollama
}


def make_vlm_backend(
    name: str, options: VlmOptions, settings: BackendSettings | None = None
) -> VlmBackend:
    """The backend called `name`; raises ConfigError for an unknown name."""
    try:
        factory = VLM_BACKENDS[name]
    except KeyError:
        raise ConfigError(
            f"unknown responder backend {name!r}; known: {', '.join(VLM_BACKENDS)}"
        ) from None
    return factory(options, settings or BackendSettings())
