"""The tiny test models load back offline and run: CLIP scores image/text, PaliGemma generates."""

from __future__ import annotations

import numpy as np
import torch
from tiny_models import build_tiny_clip, build_tiny_paligemma

from uservlm_ros.core.labels import profile_text
from uservlm_ros.core.prompt import build_prompt


def test_tiny_clip_loads_and_scores(tmp_path):
    from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

    folder = build_tiny_clip(tmp_path / "clip")
    model = CLIPModel.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    image_processor = AutoImageProcessor.from_pretrained(folder)
    texts = ["a photo of a man.", profile_text("50-59", "Male", "White")]
    tokens = tokenizer(texts, padding=True, return_tensors="pt")
    profile_ids = tokens.input_ids[1].tolist()  # the longest text: no padding
    assert profile_ids[0] == tokenizer.bos_token_id and profile_ids[-1] == tokenizer.eos_token_id
    assert len(profile_ids) < len(texts[1]) // 3  # the prompt vocabulary is in the tokenizer
    image = np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)
    pixels = image_processor(images=[image], return_tensors="pt").pixel_values
    with torch.no_grad():
        out = model(**tokens, pixel_values=pixels)
    assert out.logits_per_image.shape == (1, 2)
    assert torch.isfinite(out.logits_per_image).all()


def test_tiny_paligemma_trains_and_generates(tmp_path):
    from transformers import PaliGemmaForConditionalGeneration, PaliGemmaProcessor

    folder = build_tiny_paligemma(tmp_path / "vlm")
    processor = PaliGemmaProcessor.from_pretrained(folder)
    model = PaliGemmaForConditionalGeneration.from_pretrained(folder).eval()
    for token in ("<image>", "<bos>", "<eos>", "<pad>", "<|im_start|>", "<|im_end|>"):
        assert processor.tokenizer.convert_tokens_to_ids(token) != processor.tokenizer.unk_token_id
    image = np.zeros((32, 32, 3), dtype=np.uint8)
    prompt = build_prompt("What should I wear today?")
    batch = processor(images=[image], text=[prompt], suffix=["A warm coat."], return_tensors="pt")
    answer_labels = batch["labels"][batch["labels"] != -100]
    assert len(answer_labels) > 0 and answer_labels[-1] == processor.tokenizer.eos_token_id
    assert torch.isfinite(model(**batch).loss)
    inputs = processor(images=[image], text=[prompt], return_tensors="pt")
    generated = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert generated.shape[1] == inputs["input_ids"].shape[1] + 4
