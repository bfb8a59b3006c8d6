"""core/registry.py and core/parameters.setting: one pattern for every kind of backend."""

from __future__ import annotations

from dataclasses import dataclass, make_dataclass

import pytest

from uservlm_ros.core.errors import ConfigError
from uservlm_ros.core.parameters import (
    check_settings,
    config_of,
    params_of,
    renamed_settings,
    setting,
)
from uservlm_ros.core.registry import Registry


@dataclass(frozen=True)
class SmallOptions:
    path: str = setting("", name="model_path")
    """Where the model is"""
    threads: int = setting(1, min=1, max=8)
    """CPU threads"""
    note: str = "not a setting"

    def __post_init__(self) -> None:
        check_settings(self)


@dataclass(frozen=True)
class BigOptions:
    threads: int = setting(1, min=1, max=8)
    """CPU threads"""
    size: float = setting(0.5, min=0.0, max=1.0, live=True)
    """How big: a description
    over two lines"""


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
        threads: int = setting(4, min=1, max=8)
        """CPU threads"""

    kinds.add("odd", print, OtherThreads, "threads differ")
    with pytest.raises(ValueError, match=r"gadget\.threads differs"):
        kinds.params()


def test_a_settings_description_is_the_docstring_under_it_and_is_required():
    assert [p.description for p in params_of(BigOptions, "")] == [
        "CPU threads",
        "How big: a description over two lines",
    ]

    @dataclass(frozen=True)
    class Derived(SmallOptions):
        extra: bool = setting(False)
        """Added by the subclass"""

    assert [p.description for p in params_of(Derived, "")] == [
        "Where the model is",
        "CPU threads",
        "Added by the subclass",
    ]

    @dataclass(frozen=True)
    class Undescribed:
        threads: int = setting(1)
        # a comment is not a description

    with pytest.raises(TypeError, match=r"Undescribed\.threads: a setting needs its description"):
        params_of(Undescribed, "")


def test_a_group_of_settings_is_renamed_under_a_prefix():
    @dataclass(frozen=True)
    class Link:
        port: int = setting(9559, min=1, max=65535)
        """Port; see {prefix}.host"""

    Named = make_dataclass("Named", renamed_settings(Link, "robot"), frozen=True)
    (param,) = params_of(Named, "")
    assert (param.name, param.default, param.max) == ("robot.port", 9559, 65535)
    assert param.description == "Port; see robot.host"
    assert Named(port=1).port == 1


def test_validation_needs_no_source_and_a_subclass_keeps_its_base_description():
    namespace: dict = {}
    source = (
        "from dataclasses import dataclass\n"
        "from uservlm_ros.core.parameters import check_settings, setting\n"
        "@dataclass(frozen=True)\n"
        "class Typed:\n"
        "    threads: int = setting(1, min=1, max=8)\n"
        "    def __post_init__(self):\n"
        "        check_settings(self)\n"
    )
    exec(source, namespace)  # a class whose source inspect cannot read (as in a REPL)
    assert namespace["Typed"](threads=2).threads == 2
    with pytest.raises(ConfigError, match=r"Typed\.threads' must be <= 8"):
        namespace["Typed"](threads=9)
    assert config_of(namespace["Typed"], "x", {"x.threads": 3}).threads == 3
    with pytest.raises(TypeError, match="cannot be read"):
        params_of(namespace["Typed"], "x")

    @dataclass(frozen=True)
    class MoreThreads(BigOptions):
        threads: int = setting(4, min=1, max=8)

    assert params_of(MoreThreads, "")[0].description == "CPU threads"
    assert params_of(MoreThreads, "")[0].default == 4


def test_a_renamed_group_keeps_a_settings_own_name():
    @dataclass(frozen=True)
    class Link:
        port: int = setting(9559, name="net.port")
        """Port"""

    Named = make_dataclass("Named", renamed_settings(Link, "robot"), frozen=True)
    assert [p.name for p in params_of(Named, "")] == ["robot.net.port"]
