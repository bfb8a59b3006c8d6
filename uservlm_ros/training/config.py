"""Flat YAML training configs read into dataclasses, plus the run set-up every stage shares.

A config is one YAML mapping of `key: value` (no nesting); every key is a field of the stage's
dataclass, whose `metadata["help"]` says what it means. `--set key=value` overrides from the
command line are parsed as YAML scalars, so `epochs=2` is an int and `bf16=false` a bool.
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path
from typing import Any, TypeVar

import yaml

from uservlm_ros.core.errors import ConfigError

T = TypeVar("T")


def option(default: Any, help: str) -> Any:
    """A dataclass field with its help text (shown by `uservlm train STAGE --help-config`)."""
    if isinstance(default, list | dict):
        return dataclasses.field(
            default_factory=lambda: type(default)(default), metadata={"help": help}
        )
    return dataclasses.field(default=default, metadata={"help": help})


def _coerce(name: str, value: Any, default: Any) -> Any:
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"config key {name!r} must be true or false, got {value!r}")
        return value
    if isinstance(default, float) and isinstance(value, int | str) and not isinstance(value, bool):
        try:  # YAML reads 1e-5 (no dot) as a string
            return float(value)
        except ValueError:
            pass
    if isinstance(default, tuple) and isinstance(value, list):
        return tuple(value)
    if not isinstance(value, type(default)):
        raise ConfigError(f"config key {name!r} must be {type(default).__name__}, got {value!r}")
    return value


def load_config(cls: type[T], path: Path | None = None, overrides: list[str] = ()) -> T:
    """The dataclass `cls` from a flat YAML file and `key=value` overrides; unknown keys fail."""
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path} must hold one flat mapping of key: value")
        values.update(loaded)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r} must look like key=value")
        values[key.strip()] = yaml.safe_load(text)
    fields = {field.name: field for field in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"unknown config keys {unknown}; known: {sorted(fields)}")
    defaults = cls()
    typed = {name: _coerce(name, value, getattr(defaults, name)) for name, value in values.items()}
    config = cls(**typed)
    check = getattr(config, "check", None)
    if check is not None:
        check()
    return config


def check_choice(key: str, value: Any, choices: tuple) -> None:
    """A ConfigError unless the config key `key` holds one of `choices`."""
    if value not in choices:
        raise ConfigError(f"{key} must be one of {choices}, got {value!r}")


def config_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def save_config(config: Any, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config_dict(config), sort_keys=False))
    return path


def config_help(cls: type) -> str:
    """Every key of a stage config with its default and meaning (for --help-config)."""
    defaults = cls()
    return "\n".join(
        f"{field.name} (default {getattr(defaults, field.name)!r}): {field.metadata['help']}"
        for field in dataclasses.fields(cls)
    )


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(device: str) -> str:
    """`auto` picks cuda when present; an explicit cuda without a GPU is a config error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for but no CUDA GPU is available")
    return device


def use_bf16(bf16: bool, device: str) -> bool:
    """bf16 mixed precision only on a GPU that supports it (CPU runs stay float32)."""
    import torch

    return bool(bf16 and device.startswith("cuda") and torch.cuda.is_bf16_supported())
