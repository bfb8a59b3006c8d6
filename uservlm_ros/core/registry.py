"""One pattern for every kind of backend (face detector, profiler, identity, responder, ...).

A `Registry` maps a backend's name to its factory and its options dataclass. The options'
fields are settings (core/parameters.setting): each carries its parameter's name, default,
description and range once, so the node's Params are generated (`Registry.params`) and the
options are built from the node's parameter values (`Registry.create`). Adding a backend is one
class, one options dataclass (or an existing one) and one `add` line; the node, its docs table
and the `choices` of its backend parameter follow.

Factories import their heavy packages themselves, so a registry costs nothing to import.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from uservlm_ros.core.errors import ConfigError
from uservlm_ros.core.parameters import Param, config_of, params_of

Backend = TypeVar("Backend")


@dataclass(frozen=True)
class Entry:
    name: str
    factory: Callable[..., Any]  # factory(options, *context) -> the backend
    options: type  # a dataclass of settings
    summary: str  # one line, for the backend parameter's description


class Registry(Generic[Backend]):
    def __init__(self, kind: str, prefix: str) -> None:
        """`kind` names the backends in messages ("face detector"); `prefix` is the parameter
        group of their options ("detector" -> `detector.<setting>`)."""
        self.kind, self.prefix = kind, prefix
        self._entries: dict[str, Entry] = {}

    def add(self, name: str, factory: Callable[..., Backend], options: type, summary: str) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = Entry(name, factory, options, summary)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def entry(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            raise ConfigError(
                f"unknown {self.kind} {name!r}; known: {', '.join(self._entries)}"
            ) from None

    def options(self, name: str, values: Mapping[str, Any]) -> Any:
        """The options of backend `name` from node parameter values (`<prefix>.<setting>`)."""
        return config_of(self.entry(name).options, self.prefix, values)

    def create(self, name: str, options: Any, *context: Any) -> Backend:
        """The backend `name`, built by its factory from its options (an options instance, or
        node parameter values to build them from) and whatever context its factory takes."""
        entry = self.entry(name)
        if not isinstance(options, entry.options):
            options = config_of(entry.options, self.prefix, options)
        return entry.factory(options, *context)

    def params(self) -> list[Param]:
        """Every backend's settings as node parameters, each name once (backends of a kind may
        share an options dataclass, or a setting, which must then agree)."""
        found: dict[str, Param] = {}
        for entry in self._entries.values():
            for param in params_of(entry.options, self.prefix):
                seen = found.setdefault(param.name, param)
                if seen != param:
                    raise ValueError(f"{self.kind} setting {param.name} differs between backends")
        return list(found.values())

    def choice_param(self, name: str, default: str, what: str, live: bool = False) -> Param:
        """The node parameter that picks the backend, listing each with its summary."""
        listed = "; ".join(f"`{e.name}`: {e.summary}" for e in self._entries.values())
        return Param(name, default, f"{what}: {listed}", choices=self.names, live=live)
