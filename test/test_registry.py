"""core/registry.py and core/parameters.setting: one pattern for every kind of backend."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from uservlm_ros.core.errors import ConfigError
from uservlm_ros.core.parameters import check_settings, config_of, params_of, setting
from uservlm_ros.core.registry import Registry


@dataclass(frozen=True)
class SmallOptions:
    path: str = setting("", "Where the model is", name="model_path")
    threads: int = setting(1, "CPU threads", min=1, max=8)
    note: str = "not a setting"

    def __post_init__(self) -> None:
        check_settings(self)


@dataclass(frozen=True)
class BigOptions:
    threads: int = setting(1, "CPU threads", min=1, max=8)
    size: float = setting(0.5, "How big", min=0.0, max=1.0, live=True)


def registry() -> Registry:
    kinds: Registry = Registry("gadget", "gadget")
    kinds.add("small", lambda options, tag="": ("small", options, tag), SmallOptions, "a small one")
    kinds.add("big", lambda options: ("big", options), BigOptions, "a big one")
    return kinds


def test_settings_are_params_and_build_their_dataclass():
    params = params_of(SmallOptions, "gadget")
    assert [(p.name, p.default, p.max) for p in params] == [
        ("gadget.model_path", "", None),
        ("gadget.threads", 1, 8),
    ]
    options = config_of(SmallOptions, "gadget", {"gadget.model_path": "/m", "gadget.threads": 2})
    assert options == SmallOptions("/m", 2)
    with pytest.raises(ConfigError, match=r"SmallOptions\.threads' must be <= 8"):
        SmallOptions(threads=9)


def test_a_registry_makes_the_params_the_choice_and_the_backend():
    kinds = registry()
    assert kinds.names == ("small", "big")
    names = [p.name for p in kinds.params()]
    assert names == ["gadget.model_path", "gadget.threads", "gadget.size"]  # shared once
    choice = kinds.choice_param("gadget.backend", "small", "Gadget")
    assert choice.choices == ("small", "big") and "`big`: a big one" in choice.description
    values = {"gadget.model_path": "/m", "gadget.threads": 3, "gadget.size": 0.1}
    assert kinds.create("small", values, "ctx") == ("small", SmallOptions("/m", 3), "ctx")
    assert kinds.create("big", BigOptions(size=0.9)) == ("big", BigOptions(1, 0.9))
    assert kinds.options("big", values) == BigOptions(3, 0.1)


def test_unknown_names_and_conflicting_settings_are_refused():
    kinds = registry()
    with pytest.raises(ConfigError, match="unknown gadget 'huge'; known: small, big"):
        kinds.create("huge", {})
    with pytest.raises(ValueError, match="twice"):
        kinds.add("big", print, BigOptions, "again")

    @dataclass(frozen=True)
    class OtherThreads:
        threads: int = setting(4, "CPU threads", min=1, max=8)

    kinds.add("odd", print, OtherThreads, "threads differ")
    with pytest.raises(ValueError, match=r"gadget\.threads differs"):
        kinds.params()
