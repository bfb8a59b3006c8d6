"""The responder backends by name (the node's `responder.backend` parameter), in one table."""

from __future__ import annotations

from collections.abc import Callable

from uservlm_ros.backends.vlm import VlmBackend, VlmOptions
from uservlm_ros.core.errors import ConfigError


def _paligemma(options: VlmOptions, log: Callable[[str], None], word_delay_s: float) -> VlmBackend:
    from uservlm_ros.backends.paligemma import PaliGemmaBackend

    return PaliGemmaBackend(options, log)


def _fallback(options: VlmOptions, log: Callable[[str], None], word_delay_s: float) -> VlmBackend:
    from uservlm_ros.backends.fallback_responder import FallbackResponder

    return FallbackResponder(word_delay_s)


# Imported lazily: the fallback must work on a machine without torch or transformers.
VLM_BACKENDS: dict[str, Callable[[VlmOptions, Callable[[str], None], float], VlmBackend]] = {
    "paligemma": _paligemma,
    "fallback": _fallback,
}


def make_vlm_backend(
    name: str, options: VlmOptions, log: Callable[[str], None] = print, word_delay_s: float = 0.0
) -> VlmBackend:
    """The backend called `name`; raises ConfigError for an unknown name."""
    try:
        factory = VLM_BACKENDS[name]
    except KeyError:
        raise ConfigError(
            f"unknown responder backend {name!r}; known: {', '.join(VLM_BACKENDS)}"
        ) from None
    return factory(options, log, word_delay_s)
