"""The `clip` profiler: a CLIP-family image-text model classifying face crops zero-shot.

FLYP-style heads (the papers' method): per class, the L2-normalised text embeddings of its
prompts over every template (`core/labels.class_prompts`) are averaged and re-normalised; a crop's
logits are the learned logit scale times the cosine similarity of its image embedding with each
class. The same functions serve training (imported by the profiler training code), export to
ONNX, and the user_profiler_node backend.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from uservlm_ros.core import labels
from uservlm_ros.core.errors import ModelLoadError
from uservlm_ros.core.fusion import CropEstimate
from uservlm_ros.core.manifest import MANIFEST_NAME, Manifest, read_manifest, write_manifest

# OpenAI CLIP's image normalisation (FaRL uses the same).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
ONNX_FILE = "profiler.onnx"
ONNX_KIND = "profiler-clip-onnx"
# Extra output of exports: the L2-normalised image embedding, for fidelity checks (int8 vs fp32);
# the backend does not fetch it.
EMBEDDING_OUTPUT = "image_embeds"


def _features(output: Any) -> torch.Tensor:
    """transformers 5 returns a model output whose pooler_output is the projected embedding."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def _model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def zero_shot_heads(
    model: Any, tokenizer: Any, attributes: Iterable[str] = labels.ATTRIBUTES
) -> dict[str, torch.Tensor]:
    """Per attribute a [num_classes, dim] tensor of unit rows: each class's mean prompt embedding.

    The model is a transformers CLIPModel (or anything with `get_text_features`); the tokenizer a
    CLIP tokenizer called as `tokenizer(texts, padding=True, return_tensors="pt")`.
    """
    heads = {}
    device = _model_device(model)
    for attribute in attributes:
        prompts = labels.class_prompts(attribute)
        flat = [text for class_texts in prompts for text in class_texts]
        tokens = tokenizer(flat, padding=True, return_tensors="pt")
        embeds = _features(
            model.get_text_features(
                input_ids=tokens["input_ids"].to(device),
                attention_mask=tokens["attention_mask"].to(device),
            )
        ).float()
        embeds = torch.nn.functional.normalize(embeds, dim=-1)
        per_class = embeds.reshape(len(prompts), len(prompts[0]), -1).mean(dim=1)
        heads[attribute] = torch.nn.functional.normalize(per_class, dim=-1)
    return heads


def image_embeddings(model: Any, pixel_values: torch.Tensor) -> torch.Tensor:
    """L2-normalised image embeddings [batch, dim] (float32)."""
    embeds = _features(model.get_image_features(pixel_values=pixel_values)).float()
    return torch.nn.functional.normalize(embeds, dim=-1)


def attribute_logits(
    model: Any, pixel_values: torch.Tensor, heads: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Per attribute [batch, num_classes] logits: logit_scale.exp() * cos(image, class)."""
    embeds = image_embeddings(model, pixel_values)
    scale = model.logit_scale.exp().float()
    return {name: scale * embeds @ head.to(embeds.device).T for name, head in heads.items()}


def preprocess_crops(rgb_crops: Sequence[np.ndarray], image_size: int = 224) -> torch.Tensor:
    """(h, w, 3) uint8 RGB crops -> [batch, 3, image_size, image_size] CLIP-normalised float32."""
    if not rgb_crops:
        return torch.empty(0, 3, image_size, image_size)
    batch = np.empty((len(rgb_crops), image_size, image_size, 3), dtype=np.float32)
    for index, crop in enumerate(rgb_crops):
        if crop.ndim != 3 or crop.shape[2] != 3 or crop.dtype != np.uint8:
            raise ValueError(f"expected (h, w, 3) uint8 RGB crops, got {crop.shape} {crop.dtype}")
        if crop.shape[:2] != (image_size, image_size):
            crop = cv2.resize(crop, (image_size, image_size), interpolation=cv2.INTER_AREA)
        batch[index] = crop
    batch = (batch / 255.0 - np.array(CLIP_MEAN, np.float32)) / np.array(CLIP_STD, np.float32)
    return torch.from_numpy(np.ascontiguousarray(batch.transpose(0, 3, 1, 2)))


class _ProbabilityGraph(torch.nn.Module):
    """Image encoder + fixed heads -> one softmax output per attribute, then the normalised
    image embedding (the exported graph)."""

    def __init__(self, model: Any, heads: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.model = model
        self.names = list(heads)
        for name, head in heads.items():
            self.register_buffer(f"head_{name}", head.detach().float().clone())

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        embeds = image_embeddings(self.model, pixel_values)
        scale = self.model.logit_scale.exp().float()
        probs = []
        for name in self.names:
            logits = scale * embeds @ getattr(self, f"head_{name}").T
            probs.append(torch.softmax(logits, dim=-1))
        return (*probs, embeds)


def export_onnx(
    model: Any,
    heads: dict[str, torch.Tensor],
    out_dir: Path,
    name: str,
    version: str = "0.1.0",
    base: str = "",
    image_size: int | None = None,
    opset: int = 17,
    training: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
) -> Path:
    """Write `out_dir/profiler.onnx` (input `pixel_values`, one probability output per attribute,
    named after it, and `image_embeds`) and its manifest (kind profiler-clip-onnx); returns the
    manifest path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    size = image_size or int(model.config.vision_config.image_size)
    graph = _ProbabilityGraph(model, heads).eval()
    parameter = next(model.parameters())
    dummy = torch.zeros(1, 3, size, size, device=parameter.device, dtype=parameter.dtype)
    names = [*heads, EMBEDDING_OUTPUT]
    with torch.no_grad(), warnings.catch_warnings():
        # shape checks traced as constants are fine: the image size is fixed by the model
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter's notice
        torch.onnx.export(
            graph,
            (dummy,),
            str(out_dir / ONNX_FILE),
            input_names=["pixel_values"],
            output_names=names,
            dynamic_axes={"pixel_values": {0: "batch"}, **{n: {0: "batch"} for n in names}},
            opset_version=opset,
            dynamo=False,  # the TorchScript exporter needs no onnxscript
        )
    manifest = Manifest(
        name=name,
        kind=ONNX_KIND,
        version=version,
        base=base,
        labels={attribute: list(labels.LABEL_SETS[attribute]) for attribute in heads},
        templates={attribute: list(labels.PROMPT_TEMPLATES[attribute]) for attribute in heads},
        training=training or {},
        metrics=metrics or {},
    )
    return write_manifest(out_dir, manifest)


# --- loading checkpoints -------------------------------------------------------------------------

_OPENAI_BLOCK = {  # OpenAI/FaRL residual-block parameter -> transformers CLIPEncoderLayer name
    "attn.out_proj.weight": "self_attn.out_proj.weight",
    "attn.out_proj.bias": "self_attn.out_proj.bias",
    "ln_1.weight": "layer_norm1.weight",
    "ln_1.bias": "layer_norm1.bias",
    "ln_2.weight": "layer_norm2.weight",
    "ln_2.bias": "layer_norm2.bias",
    "mlp.c_fc.weight": "mlp.fc1.weight",
    "mlp.c_fc.bias": "mlp.fc1.bias",
    "mlp.c_proj.weight": "mlp.fc2.weight",
    "mlp.c_proj.bias": "mlp.fc2.bias",
}
_OPENAI_TOP = {
    "token_embedding.weight": "text_model.embeddings.token_embedding.weight",
    "positional_embedding": "text_model.embeddings.position_embedding.weight",
    "ln_final.weight": "text_model.final_layer_norm.weight",
    "ln_final.bias": "text_model.final_layer_norm.bias",
    "logit_scale": "logit_scale",
    "visual.class_embedding": "vision_model.embeddings.class_embedding",
    "visual.positional_embedding": "vision_model.embeddings.position_embedding.weight",
    "visual.conv1.weight": "vision_model.embeddings.patch_embedding.weight",
    "visual.ln_pre.weight": "vision_model.pre_layrnorm.weight",
    "visual.ln_pre.bias": "vision_model.pre_layrnorm.bias",
    "visual.ln_post.weight": "vision_model.post_layernorm.weight",
    "visual.ln_post.bias": "vision_model.post_layernorm.bias",
}
HEAD_WIDTH = 64  # OpenAI CLIP and FaRL use 64-wide attention heads in both towers


def _count_blocks(state: dict[str, torch.Tensor], prefix: str) -> int:
    indices = {int(k[len(prefix) :].split(".")[0]) for k in state if k.startswith(prefix)}
    return max(indices) + 1 if indices else 0


def openai_clip_config(state: dict[str, torch.Tensor]) -> Any:
    """The transformers CLIPConfig of an OpenAI-format state dict (ViT-B/16: width 768, patch 16,
    12 layers, 224 px; text width 512, 12 layers, 77 tokens; embeddings of 512)."""
    from transformers import CLIPConfig

    patch = state["visual.conv1.weight"].shape[-1]
    grid = round((state["visual.positional_embedding"].shape[0] - 1) ** 0.5)
    vision_width = state["visual.conv1.weight"].shape[0]
    text_width = state["ln_final.weight"].shape[0]
    return CLIPConfig(
        text_config={
            "vocab_size": state["token_embedding.weight"].shape[0],
            "hidden_size": text_width,
            "intermediate_size": state["transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
            "num_hidden_layers": _count_blocks(state, "transformer.resblocks."),
            "num_attention_heads": max(text_width // HEAD_WIDTH, 1),
            "max_position_embeddings": state["positional_embedding"].shape[0],
            "hidden_act": "quick_gelu",
        },
        vision_config={
            "hidden_size": vision_width,
            "intermediate_size": state["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
            "num_hidden_layers": _count_blocks(state, "visual.transformer.resblocks."),
            "num_attention_heads": max(vision_width // HEAD_WIDTH, 1),
            "image_size": patch * grid,
            "patch_size": patch,
            "hidden_act": "quick_gelu",
        },
        projection_dim=state["text_projection"].shape[1],
    )


def openai_to_transformers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename (and split / transpose where the layouts differ) OpenAI-format CLIP weights into
    transformers CLIPModel names. Keys of neither tower (FaRL's extra heads) are left out."""
    mapped = {_OPENAI_TOP[k]: v for k, v in state.items() if k in _OPENAI_TOP}
    # OpenAI multiplies x @ proj; a Linear computes x @ W.T.
    mapped["text_projection.weight"] = state["text_projection"].T.contiguous()
    mapped["visual_projection.weight"] = state["visual.proj"].T.contiguous()
    for source, target in (
        ("transformer.", "text_model."),
        ("visual.transformer.", "vision_model."),
    ):
        for index in range(_count_blocks(state, f"{source}resblocks.")):
            old, new = f"{source}resblocks.{index}.", f"{target}encoder.layers.{index}."
            for name, renamed in _OPENAI_BLOCK.items():
                mapped[new + renamed] = state[old + name]
            for kind in ("weight", "bias"):
                q, k, v = state[f"{old}attn.in_proj_{kind}"].chunk(3, dim=0)
                for proj, value in zip("qkv", (q, k, v), strict=True):
                    mapped[f"{new}self_attn.{proj}_proj.{kind}"] = value.contiguous()
    return mapped


def read_openai_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The weights of an OpenAI-format (`.pt`) or FaRL-format (`{"state_dict": ...}`) file."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise ModelLoadError(f"{path} is not an OpenAI/FaRL CLIP state dict")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if "visual.conv1.weight" not in state:
        raise ModelLoadError(f"{path} is not an OpenAI/FaRL CLIP state dict (no visual.conv1)")
    return {k: v.float() for k, v in state.items()}


def clip_from_openai_state_dict(state: dict[str, torch.Tensor], tokenizer: Any) -> Any:
    """A transformers CLIPModel holding OpenAI-format weights; special token ids from tokenizer."""
    from transformers import CLIPModel

    config = openai_clip_config(state)
    for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
        setattr(config.text_config, name, getattr(tokenizer, name))
    model = CLIPModel(config)
    missing, _ = model.load_state_dict(openai_to_transformers(state), strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing:
        raise ModelLoadError(f"the checkpoint lacks CLIP weights: {', '.join(missing[:5])}")
    return model.eval()


def _torch_dtype(name: str) -> torch.dtype:
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[name]


class ClipProfiler:
    """The `clip` backend: torch (HF folder or state dict) or onnxruntime (exported folder)."""

    def __init__(self, options: Any) -> None:
        path = Path(options.path) if options.path else None
        hint = "set model.path to a CLIP folder, a .pt/.pth checkpoint or an exported model"
        if path is None or not path.exists():
            raise ModelLoadError(
                f"clip profiler model {path or '(model.path empty)'} not found; {hint}"
            )
        if path.is_file() and path.suffix == ".onnx":
            raise ModelLoadError(
                f"{path} is an .onnx file: set model.path to the folder `uservlm export profiler` "
                "wrote (the .onnx beside its manifest.json, which names the labels)"
            )
        self.device = options.device
        self.dtype = _torch_dtype(options.dtype)
        self._session = None
        try:
            if (path / MANIFEST_NAME).is_file() and read_manifest(
                path, verify=False
            ).kind == ONNX_KIND:
                self._load_onnx(path, options.threads)
            else:
                self._load_torch(path, options)
        except ModelLoadError:
            raise
        except Exception as error:  # torch, transformers, safetensors, pickle: no common type
            reason = " ".join(f"{type(error).__name__}: {error}".split())
            raise ModelLoadError(f"cannot load the CLIP model {path}: {reason}; {hint}") from error

    def _load_onnx(self, folder: Path, threads: int) -> None:
        import onnxruntime as ort

        manifest = read_manifest(folder, kinds=(ONNX_KIND,))
        self.model_id = manifest.model_id
        providers = ["CPUExecutionProvider"]
        if (
            self.device.startswith("cuda")
            and "CUDAExecutionProvider" in ort.get_available_providers()
        ):
            device_id = int(self.device.partition(":")[2] or 0)
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": device_id}))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1  # one branch at a time: the graph is a single chain
        try:
            self._session = ort.InferenceSession(
                str(folder / ONNX_FILE), options, providers=providers
            )
        except Exception as error:  # onnxruntime's errors have no common type
            reason = " ".join(str(error).split())
            raise ModelLoadError(f"{folder / ONNX_FILE} cannot be loaded: {reason}") from error
        self.image_size = int(self._session.get_inputs()[0].shape[-1])
        outputs = [o.name for o in self._session.get_outputs()]
        self._outputs = [name for name in outputs if name != EMBEDDING_OUTPUT]
        for name in self._outputs:
            if manifest.labels.get(name) != list(labels.LABEL_SETS.get(name, ())):
                raise ModelLoadError(
                    f"{folder / MANIFEST_NAME}: labels of {name!r} differ from uservlm's label set"
                )
        self.supported = frozenset(self._outputs)

    def _load_torch(self, path: Path, options: Any) -> None:
        from transformers import AutoTokenizer, CLIPModel

        # More threads than free cores make torch eager many times slower on a busy robot CPU.
        torch.set_num_threads(options.threads)
        if path.is_dir():
            if (path / MANIFEST_NAME).is_file():
                read_manifest(path, kinds=("profiler-clip-torch",))
            tokenizer = AutoTokenizer.from_pretrained(
                options.tokenizer_path or str(path), local_files_only=True
            )
            model = CLIPModel.from_pretrained(str(path), local_files_only=True).eval()
        else:
            state = read_openai_state_dict(path)
            if not options.tokenizer_path:
                raise ModelLoadError(
                    f"{path} is a state dict without a tokenizer; set model.tokenizer_path to a "
                    "CLIP tokenizer folder"
                )
            tokenizer = AutoTokenizer.from_pretrained(options.tokenizer_path, local_files_only=True)
            model = clip_from_openai_state_dict(state, tokenizer)
        self.model = model.to(self.device, self.dtype)
        self.heads = zero_shot_heads(self.model, tokenizer)
        self.image_size = int(model.config.vision_config.image_size)
        self.model_id = _model_id(path)
        self.supported = frozenset(self.heads)

    def probabilities(self, crops: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        """Per supported attribute, [len(crops), num_classes] softmax probabilities."""
        pixels = preprocess_crops(crops, self.image_size)
        if self._session is not None:
            # One run for all crops of a frame: batching amortises the per-run overhead.
            values = self._session.run(self._outputs, {"pixel_values": pixels.numpy()})
            return dict(zip(self._outputs, values, strict=True))
        with torch.no_grad():
            logits = attribute_logits(self.model, pixels.to(self.device, self.dtype), self.heads)
        return {name: torch.softmax(v, dim=-1).cpu().numpy() for name, v in logits.items()}

    def estimate(self, crops: list[np.ndarray], attributes: frozenset[str]) -> list[CropEstimate]:
        if not crops:
            return []
        probs = {k: v.astype(np.float64) for k, v in self.probabilities(crops).items()}
        wanted = {
            name: p / p.sum(axis=1, keepdims=True)
            for name, p in probs.items()
            if name in attributes
        }
        centres = np.array(labels.AGE_GROUP_CENTRES)
        return [
            CropEstimate(
                {name: p[i] for name, p in wanted.items()},
                age_years=float(wanted["age_group"][i] @ centres)
                if "age_group" in wanted
                else None,
            )
            for i in range(len(crops))
        ]


def _model_id(path: Path) -> str:
    if (path / MANIFEST_NAME).is_file():
        return read_manifest(path, verify=False).model_id
    return f"clip:{path.stem if path.is_file() else path.name}"
