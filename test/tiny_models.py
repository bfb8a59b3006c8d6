"""Tiny random models with offline-built tokenizers and processors, for tests (no model hub).

    build_tiny_clip(folder)        CLIPModel + tokenizer + CLIPImageProcessor (32 px images)
    build_tiny_paligemma(folder)   PaliGemma-2-shaped model (SigLIP + Gemma 2) + PaliGemmaProcessor

Both save with `save_pretrained`, so `from_pretrained(folder)` of the model, the tokenizer and
the processor works offline. Each builds in about a second; the builders are cached per folder
and a process-wide copy is kept, so calling them again for another folder only copies files.
"""

from __future__ import annotations

import shutil
import tempfile
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from uservlm_ros.core.labels import (
    AGE_GROUPS,
    EMOTIONS,
    ETHNICITIES,
    GENDERS,
    LABEL_SETS,
    class_prompts,
    profile_text,
)
from uservlm_ros.core.prompt import TEMPLATE

if TYPE_CHECKING:
    from transformers import PaliGemmaProcessor

CLIP_IMAGE_SIZE = 32
PALIGEMMA_IMAGE_SIZE = 32
PALIGEMMA_PATCH = 8
SEED = 0

CLIP_BOS, CLIP_EOS, CLIP_PAD = "<|startoftext|>", "<|endoftext|>", "<pad>"
VLM_SPECIAL_TOKENS = ("<pad>", "<eos>", "<bos>", "<unk>", "<image>", "<|im_start|>", "<|im_end|>")

_EXTRA_TEXT = (
    "What should I wear today? Tell me a joke. How are you? Hello, nice to meet you! "
    "I am Pepper, a robot. Sure, here is an idea for you. No, thank you. Yes, of course."
)


def _corpus() -> list[str]:
    """Every prompt and profile sentence the project builds, plus some dialogue text."""
    lines = [
        prompt for attribute in LABEL_SETS for cls in class_prompts(attribute) for prompt in cls
    ]
    lines += [
        profile_text(age, gender, ethnicity, emotion)
        for age in AGE_GROUPS
        for gender in GENDERS
        for ethnicity in ETHNICITIES[:2]
        for emotion in EMOTIONS[:2]
    ]
    lines += [TEMPLATE.format(question=_EXTRA_TEXT), _EXTRA_TEXT]
    return lines


def _byte_level_bpe(special_tokens: list[str], vocab_size: int) -> Tokenizer:
    """A byte-level BPE trained on the corpus: any text encodes, project text in few tokens."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_corpus(), trainer=trainer)
    return tokenizer


def _copy_into(source: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, folder, dirs_exist_ok=True)
    return folder


@cache
def _built(kind: str) -> Path:
    """One build per process (in a temporary folder), copied for each caller."""
    folder = Path(tempfile.mkdtemp(prefix=f"uservlm-tiny-{kind}-"))
    {"clip": _save_tiny_clip, "paligemma": _save_tiny_paligemma}[kind](folder)
    return folder


def build_tiny_clip(folder: Path) -> Path:
    """A tiny random CLIPModel, its tokenizer and image processor, saved into folder."""
    return _copy_into(_built("clip"), Path(folder))


def build_tiny_paligemma(folder: Path) -> Path:
    """A tiny random PaliGemma-2-shaped model and its PaliGemmaProcessor, saved into folder."""
    return _copy_into(_built("paligemma"), Path(folder))


def _save_tiny_clip(folder: Path) -> None:
    import torch
    from transformers import (
        CLIPConfig,
        CLIPImageProcessorPil,
        CLIPModel,
        CLIPTextConfig,
        CLIPVisionConfig,
        PreTrainedTokenizerFast,
    )

    # eos must not get id 2: CLIP then falls back to pooling at the arg-max token id.
    backend = _byte_level_bpe([CLIP_PAD, CLIP_EOS, CLIP_BOS], vocab_size=400)
    backend.post_processor = processors.TemplateProcessing(
        single=f"{CLIP_BOS} $A {CLIP_EOS}",
        special_tokens=[(t, backend.token_to_id(t)) for t in (CLIP_BOS, CLIP_EOS)],
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=CLIP_BOS,
        eos_token=CLIP_EOS,
        pad_token=CLIP_PAD,
        unk_token=CLIP_EOS,
        model_max_length=64,
    )
    text_config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=64,
        projection_dim=32,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,  # pooling takes the first eos position
    )
    vision_config = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=CLIP_IMAGE_SIZE,
        patch_size=8,
        projection_dim=32,
    )
    config = CLIPConfig(
        text_config=text_config.to_dict(), vision_config=vision_config.to_dict(), projection_dim=32
    )
    torch.manual_seed(SEED)
    CLIPModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    CLIPImageProcessorPil(
        size={"shortest_edge": CLIP_IMAGE_SIZE},
        crop_size={"height": CLIP_IMAGE_SIZE, "width": CLIP_IMAGE_SIZE},
    ).save_pretrained(folder)


def tiny_paligemma_processor(tokens: list[str]) -> PaliGemmaProcessor:
    """A PaliGemma processor: SigLIP at PALIGEMMA_IMAGE_SIZE in patches of PALIGEMMA_PATCH, and a
    byte-level BPE of 512 trained offline on `tokens`, with the chat markers."""
    from transformers import PaliGemmaProcessor, PreTrainedTokenizerFast, SiglipImageProcessorPil

    backend = _byte_level_bpe(tokens, vocab_size=512)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
        padding_side="right",
        model_max_length=256,
    )
    image_processor = SiglipImageProcessorPil(
        size={"height": PALIGEMMA_IMAGE_SIZE, "width": PALIGEMMA_IMAGE_SIZE}
    )
    image_processor.image_seq_length = (PALIGEMMA_IMAGE_SIZE // PALIGEMMA_PATCH) ** 2
    # The processor adds <image> handling and PaliGemma's <loc>/<seg> tokens to the tokenizer.
    processor = PaliGemmaProcessor(image_processor=image_processor, tokenizer=tokenizer)
    return processor


def _save_tiny_paligemma(folder: Path) -> None:
    import torch
    from transformers import (
        Gemma2Config,
        PaliGemmaConfig,
        PaliGemmaForConditionalGeneration,
        SiglipVisionConfig,
    )

    processor = tiny_paligemma_processor(list(VLM_SPECIAL_TOKENS))
    vocab_size = len(processor.tokenizer)
    hidden = 32
    text_config = Gemma2Config(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        max_position_embeddings=256,
        sliding_window=64,
        pad_token_id=processor.tokenizer.pad_token_id,
        bos_token_id=processor.tokenizer.bos_token_id,
        eos_token_id=processor.tokenizer.eos_token_id,
    )
    vision_config = SiglipVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=PALIGEMMA_IMAGE_SIZE,
        patch_size=PALIGEMMA_PATCH,
        vision_use_head=False,
    )
    config = PaliGemmaConfig(
        vision_config=vision_config.to_dict(),
        text_config=text_config.to_dict(),
        image_token_index=processor.image_token_id,
        vocab_size=vocab_size,
        projection_dim=hidden,
        hidden_size=hidden,
        pad_token_id=processor.tokenizer.pad_token_id,
        bos_token_id=processor.tokenizer.bos_token_id,
        eos_token_id=processor.tokenizer.eos_token_id,
    )
    torch.manual_seed(SEED)
    model = PaliGemmaForConditionalGeneration(config)
    model.generation_config.pad_token_id = processor.tokenizer.pad_token_id
    model.generation_config.eos_token_id = processor.tokenizer.eos_token_id
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
