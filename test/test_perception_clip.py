"""The clip profiler's building blocks on a tiny random CLIP: heads, logits, preprocessing, ONNX."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from clip_fixtures import tiny_clip, tiny_tokenizer

from uservlm_ros.backends import clip_profiler
from uservlm_ros.core import labels
from uservlm_ros.core.manifest import read_manifest


@pytest.fixture(scope="module")
def model():
    return tiny_clip(image_size=32)


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def heads(model, tokenizer):
    return clip_profiler.zero_shot_heads(model, tokenizer)


def test_heads_have_one_unit_row_per_class(heads, model):
    dim = model.config.projection_dim
    assert list(heads) == list(labels.ATTRIBUTES)
    for attribute, head in heads.items():
        assert head.shape == (len(labels.LABEL_SETS[attribute]), dim)
        assert torch.allclose(head.norm(dim=-1), torch.ones(len(head)), atol=1e-5)


def test_head_rows_average_the_normalised_template_embeddings(model, tokenizer, heads):
    prompts = labels.class_prompts("gender")[1]  # Female, every template
    tokens = tokenizer(prompts, padding=True, return_tensors="pt")
    with torch.no_grad():
        embeds = model.get_text_features(**tokens).pooler_output
    normalised = embeds / embeds.norm(dim=-1, keepdim=True)
    expected = normalised.mean(dim=0)
    expected = expected / expected.norm()
    assert len(prompts) == len(labels.PROMPT_TEMPLATES["gender"]) > 1
    assert torch.allclose(heads["gender"][1], expected, atol=1e-5)
    # An average over templates differs from any single template's embedding.
    assert not torch.allclose(heads["gender"][1], normalised[0], atol=1e-3)


def test_heads_can_be_limited_to_some_attributes(model, tokenizer):
    heads = clip_profiler.zero_shot_heads(model, tokenizer, attributes=("emotion",))
    assert list(heads) == ["emotion"]


def test_logits_are_the_scaled_cosine_similarities(model, heads):
    pixels = clip_profiler.preprocess_crops(
        [np.random.default_rng(i).integers(0, 256, (40, 30, 3), np.uint8) for i in range(3)], 32
    )
    logits = clip_profiler.attribute_logits(model, pixels, heads)
    with torch.no_grad():
        image = model.get_image_features(pixel_values=pixels).pooler_output
    image = image / image.norm(dim=-1, keepdim=True)
    scale = model.logit_scale.exp()
    for attribute, head in heads.items():
        assert logits[attribute].shape == (3, len(head))
        assert torch.allclose(logits[attribute], scale * image @ head.T, atol=1e-4)
        # cosine similarities are bounded by the scale
        assert logits[attribute].abs().max() <= scale + 1e-4


def test_preprocessing_resizes_and_uses_clip_mean_and_std():
    white = np.full((50, 70, 3), 255, np.uint8)
    black = np.zeros((224, 224, 3), np.uint8)
    batch = clip_profiler.preprocess_crops([white, black])
    assert batch.shape == (2, 3, 224, 224) and batch.dtype == torch.float32
    for channel in range(3):
        mean, std = clip_profiler.CLIP_MEAN[channel], clip_profiler.CLIP_STD[channel]
        assert batch[0, channel].mean().item() == pytest.approx((1 - mean) / std, abs=1e-5)
        assert batch[1, channel].mean().item() == pytest.approx(-mean / std, abs=1e-5)
    assert clip_profiler.preprocess_crops([], 32).shape == (0, 3, 32, 32)
    with pytest.raises(ValueError, match="uint8"):
        clip_profiler.preprocess_crops([np.zeros((8, 8), np.uint8)])


def test_onnx_export_matches_torch_and_writes_a_verified_manifest(model, heads, tmp_path):
    manifest_path = clip_profiler.export_onnx(model, heads, tmp_path / "tiny", "tiny-clip")
    manifest = read_manifest(manifest_path.parent, kinds=(clip_profiler.ONNX_KIND,))
    assert manifest.model_id == "tiny-clip@0.1.0"
    assert manifest.labels["age_group"] == list(labels.AGE_GROUPS)
    assert manifest.templates["emotion"] == list(labels.PROMPT_TEMPLATES["emotion"])
    assert clip_profiler.ONNX_FILE in manifest.files

    session = ort.InferenceSession(str(tmp_path / "tiny" / clip_profiler.ONNX_FILE))
    assert [i.name for i in session.get_inputs()] == ["pixel_values"]
    assert [o.name for o in session.get_outputs()] == list(labels.ATTRIBUTES)
    crops = [np.random.default_rng(i).integers(0, 256, (32, 32, 3), np.uint8) for i in range(4)]
    pixels = clip_profiler.preprocess_crops(crops, 32)
    onnx_probs = session.run(None, {"pixel_values": pixels.numpy()})
    with torch.no_grad():
        torch_logits = clip_profiler.attribute_logits(model, pixels, heads)
    for attribute, probs in zip(labels.ATTRIBUTES, onnx_probs, strict=True):
        assert probs.shape == (4, len(labels.LABEL_SETS[attribute]))
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
        expected = torch.softmax(torch_logits[attribute], dim=-1).numpy()
        np.testing.assert_allclose(probs, expected, atol=1e-5)
