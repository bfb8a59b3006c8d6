"""A tiny random CLIP and a word-level tokenizer for it, built offline in a few seconds.

Used until (and alongside) the training engineer's `test/tiny_models.py`.
"""

from __future__ import annotations

import re
from pathlib import Path

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


def tiny_clip(image_size: int = 32, seed: int = 0) -> CLIPModel:
    import torch

    torch.manual_seed(seed)
    vocab_size = len(SPECIALS) + len(_words())
    config = CLIPConfig(
        text_config={
            "vocab_size": vocab_size,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": 32,
            "pad_token_id": 0,
            "bos_token_id": 2,
            "eos_token_id": 3,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": image_size,
            "patch_size": 8,
        },
        projection_dim=16,
    )
    return CLIPModel(config).eval()


def save_tiny_clip(folder: Path, image_size: int = 32) -> Path:
    """An HF CLIP folder (model + tokenizer) as `from_pretrained` reads from disk."""
    tiny_clip(image_size).save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    return folder
