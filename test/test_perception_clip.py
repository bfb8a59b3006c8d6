"""The clip profiler's building blocks on a tiny random CLIP: heads, logits, preprocessing, ONNX."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from clip_fixtures import tiny_clip, tiny_tokenizer, to_openai_state_dict

from uservlm_ros.backends import clip_profiler
from uservlm_ros.backends.profiler import PROFILERS, ProfilerOptions
from uservlm_ros.core import labels
from uservlm_ros.core.errors import ModelLoadError
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
    outputs = [o.name for o in session.get_outputs()]
    assert outputs == [*labels.ATTRIBUTES, clip_profiler.EMBEDDING_OUTPUT]
    crops = [np.random.default_rng(i).integers(0, 256, (32, 32, 3), np.uint8) for i in range(4)]
    pixels = clip_profiler.preprocess_crops(crops, 32)
    *onnx_probs, embeds = session.run(None, {"pixel_values": pixels.numpy()})
    with torch.no_grad():
        torch_logits = clip_profiler.attribute_logits(model, pixels, heads)
        expected_embeds = clip_profiler.image_embeddings(model, pixels).numpy()
    np.testing.assert_allclose(embeds, expected_embeds, atol=1e-5)
    for attribute, probs in zip(labels.ATTRIBUTES, onnx_probs, strict=True):
        assert probs.shape == (4, len(labels.LABEL_SETS[attribute]))
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
        expected = torch.softmax(torch_logits[attribute], dim=-1).numpy()
        np.testing.assert_allclose(probs, expected, atol=1e-5)


# --- the clip backend: loading an HF folder, an OpenAI/FaRL state dict, an exported ONNX folder ---


def random_crops(count: int, size: int = 48) -> list[np.ndarray]:
    return [
        np.random.default_rng(i).integers(0, 256, (size, size, 3), np.uint8) for i in range(count)
    ]


def expected_probabilities(model, tokenizer, crops, image_size=32):
    heads = clip_profiler.zero_shot_heads(model, tokenizer)
    with torch.no_grad():
        logits = clip_profiler.attribute_logits(
            model, clip_profiler.preprocess_crops(crops, image_size), heads
        )
    return {name: torch.softmax(v, -1).numpy() for name, v in logits.items()}


def test_clip_backend_loads_the_training_engineers_tiny_hf_folder(tmp_path):
    from tiny_models import build_tiny_clip
    from transformers import AutoTokenizer, CLIPModel

    folder = build_tiny_clip(tmp_path / "clip")
    profiler = PROFILERS.create("clip", ProfilerOptions(path=str(folder)))
    assert profiler.supported == frozenset(labels.ATTRIBUTES)
    assert profiler.model_id == "clip:clip"
    crops = random_crops(3)
    reference = expected_probabilities(
        CLIPModel.from_pretrained(folder).eval(),
        AutoTokenizer.from_pretrained(folder),
        crops,
        profiler.image_size,
    )
    got = profiler.probabilities(crops)
    for name in labels.ATTRIBUTES:
        np.testing.assert_allclose(got[name], reference[name], atol=1e-5)
    estimates = profiler.estimate(crops, frozenset({"ethnicity", "age_group"}))
    assert set(estimates[0].probabilities) == {"ethnicity", "age_group"}
    centres = np.array(labels.AGE_GROUP_CENTRES)
    assert estimates[1].age_years == pytest.approx(float(reference["age_group"][1] @ centres))


@pytest.mark.parametrize("layout", ["openai", "farl"])
def test_clip_backend_maps_openai_and_farl_state_dicts(tmp_path, layout):
    original = tiny_clip(image_size=32, width=64, heads=1, seed=3)  # 64-wide heads, as OpenAI's
    tokenizer = tiny_tokenizer()
    tokenizer.save_pretrained(tmp_path / "tokenizer")
    state = to_openai_state_dict(original)
    if layout == "farl":  # FaRL: {"state_dict": ...} plus weights of its own heads
        state = {"state_dict": {**state, "mim_head.weight": torch.zeros(3)}}
    torch.save(state, tmp_path / "ViT-B-16.pt")
    profiler = PROFILERS.create(
        "clip",
        ProfilerOptions(
            path=str(tmp_path / "ViT-B-16.pt"), tokenizer_path=str(tmp_path / "tokenizer")
        ),
    )
    assert profiler.model.config.vision_config.patch_size == 8
    assert profiler.model.config.text_config.num_hidden_layers == 2
    crops = random_crops(2)
    reference = expected_probabilities(original, tokenizer, crops)
    got = profiler.probabilities(crops)
    for name in labels.ATTRIBUTES:
        np.testing.assert_allclose(got[name], reference[name], atol=1e-5)


def test_clip_backend_runs_an_exported_onnx_folder_like_torch(tmp_path, model, tokenizer, heads):
    clip_profiler.export_onnx(model, heads, tmp_path / "onnx", "tiny-clip", version="1.2.0")
    profiler = PROFILERS.create("clip", ProfilerOptions(path=str(tmp_path / "onnx"), device="cuda"))
    assert profiler.model_id == "tiny-clip@1.2.0"  # cuda asked, no GPU here: CPU provider
    crops = random_crops(2)
    reference = expected_probabilities(model, tokenizer, crops)
    for name, probs in profiler.probabilities(crops).items():
        np.testing.assert_allclose(probs, reference[name], atol=1e-5)


def test_clip_backend_torch_in_bf16_agrees_roughly(tmp_path):
    from tiny_models import build_tiny_clip

    folder = build_tiny_clip(tmp_path / "clip")
    fp32 = PROFILERS.create("clip", ProfilerOptions(path=str(folder)))
    bf16 = PROFILERS.create("clip", ProfilerOptions(path=str(folder), dtype="bf16"))
    assert next(bf16.model.parameters()).dtype == torch.bfloat16
    crops = random_crops(2)
    for name, probs in bf16.probabilities(crops).items():
        assert probs.dtype == np.float32
        np.testing.assert_allclose(probs, fp32.probabilities(crops)[name], atol=0.05)


def test_clip_backend_load_errors_name_the_file(tmp_path, model, heads):
    with pytest.raises(ModelLoadError, match=r"nothing-here not found"):
        PROFILERS.create("clip", ProfilerOptions(path=str(tmp_path / "nothing-here")))
    torch.save({"a": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ModelLoadError, match=r"other\.pt is not an OpenAI/FaRL CLIP"):
        PROFILERS.create("clip", ProfilerOptions(path=str(tmp_path / "other.pt")))
    torch.save(to_openai_state_dict(model), tmp_path / "clip.pt")
    with pytest.raises(ModelLoadError, match=r"clip\.pt is a state dict without a tokenizer"):
        PROFILERS.create("clip", ProfilerOptions(path=str(tmp_path / "clip.pt")))
    folder = tmp_path / "exported"
    clip_profiler.export_onnx(model, heads, folder, "tiny")
    with open(folder / clip_profiler.ONNX_FILE, "r+b") as handle:
        handle.write(b"broken")
    with pytest.raises(ModelLoadError, match=r"profiler\.onnx does not match its sha256"):
        PROFILERS.create("clip", ProfilerOptions(path=str(folder)))


def test_corrupt_clip_files_name_the_file_and_the_reason(tmp_path, model, heads):
    from uservlm_ros.core.manifest import write_manifest

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a checkpoint" * 100)
    with pytest.raises(ModelLoadError, match=r"garbage\.pt: UnpicklingError") as info:
        PROFILERS.create("clip", ProfilerOptions(path=str(garbage)))
    assert "\n" not in str(info.value)
    folder = tmp_path / "exported"
    clip_profiler.export_onnx(model, heads, folder, "tiny")
    (folder / clip_profiler.ONNX_FILE).write_bytes(b"\x08\x07garbage" * 64)
    write_manifest(folder, read_manifest(folder, verify=False))  # hashes match the corrupt file
    with pytest.raises(ModelLoadError, match=r"profiler\.onnx cannot be loaded: .*\S") as info:
        PROFILERS.create("clip", ProfilerOptions(path=str(folder)))
    assert "\n" not in str(info.value)
    with pytest.raises(ModelLoadError, match=r"profiler\.onnx is an \.onnx file: set model\.path"):
        PROFILERS.create("clip", ProfilerOptions(path=str(folder / clip_profiler.ONNX_FILE)))


@pytest.mark.graph
def test_profiler_node_with_the_clip_backend_on_an_exported_model(ros, processes, tmp_path):
    from perception_graph import NODE, publish_until
    from test_perception_profiler import face_array_of
    from uservlm.msg import FaceArray, UserProfile

    from uservlm_ros.ros.qos import LATCHED_QOS, RELIABLE_QOS

    model = tiny_clip(image_size=32)
    heads = clip_profiler.zero_shot_heads(model, tiny_tokenizer())
    clip_profiler.export_onnx(model, heads, tmp_path / "tiny", "tiny-clip")
    node = processes.start_python(
        "user_profiler_node",
        "-m",
        NODE.format("user_profiler_node"),
        "--ros-args",
        "-p",
        "backend:=clip",
        "-p",
        f"model.path:={tmp_path / 'tiny'}",
        "-p",
        "threshold.ethnicity:=0.0",
    )
    node.wait_for_output("user_profiler_node active", timeout=30)
    profiles = ros.subscribe(UserProfile, "/uservlm/user_profile", LATCHED_QOS)
    faces = ros.publisher(FaceArray, "/uservlm/faces", RELIABLE_QOS)
    ros.wait_for_subscribers("/uservlm/faces")
    profile = publish_until(faces, lambda: face_array_of(random_crops(1, 224)[0]), profiles)[0]
    assert profile.model_id == "tiny-clip@0.1.0"
    assert profile.ethnicity.known and len(profile.ethnicity.probabilities) == 7
    for estimate in (profile.age_group, profile.gender, profile.ethnicity, profile.emotion):
        assert sum(estimate.probabilities) == pytest.approx(1.0, abs=1e-5)
    assert profile.ethnicity.label in labels.ETHNICITIES
