"""A tiny random CLIP and a word-level tokenizer for it, built offline in a few seconds.

Used until (and alongside) the training engineer's `test/tiny_models.py`.
"""

from __future__ import annotations

import re

import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import CLIPConfig, CLIPModel, PreTrainedTokenizerFast

from uservlm_ros.core import labels

SPECIALS = ["<pad>", "<unk>", "<bos>", "<eos>"]


def _words() -> list[str]:
    texts = [t for a in labels.ATTRIBUTES for c in labels.class_prompts(a) for t in c]
    return sorted({w for text in texts for w in re.findall(r"\w+|[^\w\s]", text.lower())})


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {token: index for index, token in enumerate(SPECIALS + _words())}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Whitespace(), pre_tokenizers.Punctuation()]
    )
    backend.normalizer = normalizers.Lowercase()
    backend.post_processor = processors.TemplateProcessing(
        single="<bos> $A <eos>", special_tokens=[("<bos>", 2), ("<eos>", 3)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<bos>",
        eos_token="<eos>",
    )


def tiny_clip(image_size: int = 32, seed: int = 0, width: int = 32, heads: int = 2) -> CLIPModel:
    torch.manual_seed(seed)
    vocab_size = len(SPECIALS) + len(_words())
    config = CLIPConfig(
        text_config={
            "vocab_size": vocab_size,
            "hidden_size": width,
            "intermediate_size": 2 * width,
            "num_hidden_layers": 2,
            "num_attention_heads": heads,
            "max_position_embeddings": 32,
            "hidden_act": "quick_gelu",
            "pad_token_id": 0,
            "bos_token_id": 2,
            "eos_token_id": 3,
        },
        vision_config={
            "hidden_size": width,
            "intermediate_size": 2 * width,
            "num_hidden_layers": 2,
            "num_attention_heads": heads,
            "image_size": image_size,
            "hidden_act": "quick_gelu",
            "patch_size": 8,
        },
        projection_dim=16,
    )
    return CLIPModel(config).eval()


def to_openai_state_dict(model: CLIPModel) -> dict:
    """The model's weights in OpenAI CLIP's layout (fused qkv, projections as matrices)."""
    hf = model.state_dict()
    state = {
        "token_embedding.weight": hf["text_model.embeddings.token_embedding.weight"],
        "positional_embedding": hf["text_model.embeddings.position_embedding.weight"],
        "ln_final.weight": hf["text_model.final_layer_norm.weight"],
        "ln_final.bias": hf["text_model.final_layer_norm.bias"],
        "text_projection": hf["text_projection.weight"].T,
        "logit_scale": hf["logit_scale"],
        "visual.class_embedding": hf["vision_model.embeddings.class_embedding"],
        "visual.positional_embedding": hf["vision_model.embeddings.position_embedding.weight"],
        "visual.conv1.weight": hf["vision_model.embeddings.patch_embedding.weight"],
        "visual.ln_pre.weight": hf["vision_model.pre_layrnorm.weight"],
        "visual.ln_pre.bias": hf["vision_model.pre_layrnorm.bias"],
        "visual.ln_post.weight": hf["vision_model.post_layernorm.weight"],
        "visual.ln_post.bias": hf["vision_model.post_layernorm.bias"],
        "visual.proj": hf["visual_projection.weight"].T,
    }
    names = {
        "ln_1": "layer_norm1",
        "ln_2": "layer_norm2",
        "mlp.c_fc": "mlp.fc1",
        "mlp.c_proj": "mlp.fc2",
        "attn.out_proj": "self_attn.out_proj",
    }
    for ours, theirs in (("transformer.", "text_model."), ("visual.transformer.", "vision_model.")):
        for i in range(2):
            layer = f"{theirs}encoder.layers.{i}."
            block = f"{ours}resblocks.{i}."
            for old, new in names.items():
                for kind in ("weight", "bias"):
                    state[f"{block}{old}.{kind}"] = hf[f"{layer}{new}.{kind}"]
            for kind in ("weight", "bias"):
                state[f"{block}attn.in_proj_{kind}"] = torch.cat(
                    [hf[f"{layer}self_attn.{p}_proj.{kind}"] for p in "qkv"]
                )
    return {k: v.clone() for k, v in state.items()}
