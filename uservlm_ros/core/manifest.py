"""models/<name>/manifest.json: what an exported model is, and a check that its files are intact.

Every export writes one; every node that loads a model from a folder reads and verifies it at
configure, so a half-copied or mismatched model fails with a message naming the file.
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from uservlm_ros.core.errors import ModelLoadError

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1

# Kinds of exported model, and the node that loads each.
KINDS = (
    "profiler-clip-onnx",  # user_profiler_node, backend clip, onnxruntime
    "profiler-clip-torch",  # user_profiler_node, backend clip, torch (HF CLIPModel folder)
    "vlm-merged",  # vlm_responder_node: a full model folder with LoRA merged in
    "vlm-adapter",  # vlm_responder_node: a peft adapter folder on top of `base`
)


@dataclass
class Manifest:
    name: str
    kind: str
    version: str = "0.1.0"
    base: str = ""  # the model this one was trained from (path or hub id)
    labels: dict[str, list[str]] = field(default_factory=dict)  # attribute -> class names
    templates: dict[str, list[str]] = field(default_factory=dict)  # attribute -> prompts
    prompt_template: str = ""  # VLM prompt, with {question}
    files: dict[str, str] = field(default_factory=dict)  # relative path -> sha256
    versions: dict[str, str] = field(default_factory=dict)  # package -> version at export
    training: dict[str, Any] = field(default_factory=dict)  # the training config used
    metrics: dict[str, Any] = field(default_factory=dict)  # validation metrics at export
    created: str = ""
    format_version: int = FORMAT_VERSION

    @property
    def model_id(self) -> str:
        return f"{self.name}@{self.version}"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in ("torch", "transformers", "peft", "onnxruntime", "onnx", "uservlm-ros"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


def write_manifest(folder: Path, manifest: Manifest) -> Path:
    """Hash every file in the folder (but the manifest) into the manifest and write it."""
    folder = Path(folder)
    if manifest.kind not in KINDS:
        raise ValueError(f"unknown model kind {manifest.kind!r}; known: {KINDS}")
    manifest.files = {
        path.relative_to(folder).as_posix(): sha256_file(path)
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != MANIFEST_NAME
    }
    manifest.versions = manifest.versions or _package_versions()
    manifest.created = manifest.created or datetime.now(UTC).isoformat(timespec="seconds")
    target = folder / MANIFEST_NAME
    target.write_text(json.dumps(asdict(manifest), indent=2, sort_keys=True) + "\n")
    return target


def read_manifest(folder: Path, kinds: tuple[str, ...] = KINDS, verify: bool = True) -> Manifest:
    """Read and check a model folder's manifest; raise ModelLoadError saying what is wrong."""
    folder = Path(folder)
    path = folder / MANIFEST_NAME
    hint = "export the model with `uservlm export` (docs/training.md)"
    if not folder.is_dir():
        raise ModelLoadError(f"model folder {folder} does not exist; {hint}")
    if not path.is_file():
        raise ModelLoadError(f"{path} is missing; {hint}")
    try:
        data = json.loads(path.read_text())
        manifest = Manifest(**data)
    except (json.JSONDecodeError, TypeError) as error:
        raise ModelLoadError(f"{path} is not a valid uservlm manifest: {error}") from error
    if manifest.format_version > FORMAT_VERSION:
        raise ModelLoadError(
            f"{path} has format {manifest.format_version}, newer than this "
            f"uservlm reads ({FORMAT_VERSION}); upgrade uservlm"
        )
    if manifest.kind not in kinds:
        raise ModelLoadError(
            f"{path} describes a {manifest.kind!r} model; expected one of {', '.join(kinds)}"
        )
    if verify:
        for relative, expected in manifest.files.items():
            file = folder / relative
            if not file.is_file():
                raise ModelLoadError(
                    f"{file} listed in {path} is missing; copy the whole model folder again"
                )
            if sha256_file(file) != expected:
                raise ModelLoadError(
                    f"{file} does not match its sha256 in {path}: the file "
                    f"is corrupt or was changed after export"
                )
    return manifest
