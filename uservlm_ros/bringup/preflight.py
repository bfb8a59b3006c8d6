"""Checks a graph before any of its nodes starts (`uservlm run`, also with --dry-run; the demo;
the launch files): every value given on top of the params file (--set, launch arguments) names
a parameter of its node and is valid for it, and a configured VLM model folder (or hub id in the
local cache) is there. A node would refuse a bad value only once it started, after the others,
and would accept an unknown name silently.

The node modules are imported for their Param tables (no node is created).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from uservlm_ros.bringup.graph import Graph
from uservlm_ros.core.errors import ConfigError
from uservlm_ros.core.parameters import Param
from uservlm_ros.nodes.catalogue import node_module

VLM_NODE = "vlm_responder_node"
# Files a model folder that transformers can load from holds (weights in one of these forms).
MODEL_CONFIG = "config.json"
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin", "*.safetensors.index.json")


def node_params(node: str) -> dict[str, Param]:
    """The Param table of a node (nodes/catalogue.py), by parameter name."""
    return {param.name: param for param in node_module(node).PARAMS}


def check_overrides(node: str, values: Mapping[str, Any]) -> None:
    """ConfigError (one line) for the first value that names no parameter of `node` or is not
    valid for it; an unknown name comes with the closest known names."""
    params = node_params(node)
    for name, value in values.items():
        if name not in params:
            close = difflib.get_close_matches(name, params, n=3, cutoff=0.6)
            hint = f"; closest: {', '.join(close)}" if close else ""
            raise ConfigError(
                f"{node} has no parameter {name!r}{hint} (all of them: `uservlm params {node}`)"
            )
        try:
            params[name].validate(value)
        except ConfigError as error:
            raise ConfigError(f"{node}: {error}") from None


def hub_cache() -> Path:
    """The local Hugging Face hub cache, as huggingface_hub finds it."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "huggingface"
    )
    return Path(home) / "hub"


def _is_hub_id(text: str) -> bool:
    parts = text.split("/")
    return (
        len(parts) == 2
        and all(parts)
        and not text.startswith((".", "~"))
        and all(c.isalnum() or c in "-_." for c in text.replace("/", ""))
    )


def _missing_from_folder(folder: Path) -> str | None:
    """What keeps transformers from loading a model from `folder`; None when nothing does."""
    if not (folder / MODEL_CONFIG).is_file():
        return f"no {MODEL_CONFIG}"
    if not any(next(folder.glob(pattern), None) for pattern in WEIGHT_PATTERNS):
        return "no weights (*.safetensors or pytorch_model*.bin)"
    return None


def check_vlm_model(path: str) -> None:
    """ConfigError naming `path` and what is missing, unless it is a model folder or the hub id
    of a model in the local cache (nothing is downloaded, ever)."""
    folder = Path(path).expanduser()
    if folder.is_dir():
        missing = _missing_from_folder(folder)
        if missing:
            raise ConfigError(f"VLM model folder {path}: {missing}; not a model folder")
        return
    if folder.exists():
        raise ConfigError(f"VLM model {path} is a file; give the model's folder")
    if not _is_hub_id(path):
        raise ConfigError(f"VLM model folder {path} does not exist")
    snapshots = hub_cache() / f"models--{path.replace('/', '--')}" / "snapshots"
    cached = sorted(snapshots.glob("*")) if snapshots.is_dir() else []
    if not any(_missing_from_folder(snapshot) is None for snapshot in cached):
        raise ConfigError(
            f"VLM model {path}: no such folder, and not in the local Hugging Face cache "
            f"({hub_cache()}); nothing is downloaded: copy the model's folder here and give "
            "its path"
        )


def check_server(url: str, model: str = "", key_file: str = "") -> str:
    """The model to ask for on the OpenAI-compatible server at `url`: `model`, checked to be
    served, or else the only model it serves (adapters aside). UservlmError in one line when the
    server cannot be reached, refuses the key (in `key_file`, if any), does not serve it, or
    serves several and none was named."""
    from uservlm_ros.backends.openai_responder import OpenAIResponder, ServerOptions

    # A placeholder name until the server says what it serves (ServerOptions needs one).
    options = ServerOptions(url=url, model=model or "?", api_key_file=key_file)
    server = OpenAIResponder(options, log=lambda _: None)
    if model:
        server.check_server()
        return model
    served = server.served_models(base_only=True)
    if not served:
        raise ConfigError(f"server {url} serves no model")
    if len(served) > 1:
        raise ConfigError(
            f"server {url} serves {', '.join(served)}; name the one to ask (--served-model NAME)"
        )
    return served[0]


def check_graph(graph: Graph) -> None:
    """Every node's overrides (check_overrides), and the VLM model the responder would load."""
    for spec in graph.nodes:
        check_overrides(spec.name, spec.overrides)
        if spec.name == VLM_NODE and spec.parameters.get("responder.backend") == "paligemma":
            path = str(spec.parameters.get("model.path") or "")
            if path:  # none: the node says it needs one (or falls back) as it starts
                check_vlm_model(path)
