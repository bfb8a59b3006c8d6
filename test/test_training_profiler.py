"""Profiler training (FLYP + MIM) on a tiny CLIP and synthetic faces, and the face data readers."""

from __future__ import annotations

import json

import pytest
import torch
from tiny_models import build_tiny_clip

from uservlm_ros.core import labels
from uservlm_ros.training.config import load_config
from uservlm_ros.training.data import DatasetError, read_face_dataset
from uservlm_ros.training.profiler import (
    MaskedImageModelling,
    ProfilerConfig,
    flyp_loss,
    load_clip,
    train_profiler,
)
from uservlm_ros.training.synthetic import make_face_dataset


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("profiler")
    return build_tiny_clip(root / "clip"), make_face_dataset(root / "faces", count=16, size=32)


def _config(workspace, output, *overrides):
    clip, faces = workspace
    base = [f"model_path={clip}", f"data_path={faces}", f"output_dir={output}"]
    base += ["batch_size=8", "lr=1e-3", "warmup_steps=1", "progress=false"]
    return load_config(ProfilerConfig, None, [*base, *overrides])


def _history(output):
    return [json.loads(line) for line in (output / "history.jsonl").read_text().splitlines()]


def test_flyp_loss_is_lowest_for_matching_pairs_and_treats_equal_captions_as_positives():
    embeds = torch.nn.functional.normalize(torch.eye(4)[:, :4] + 0.01, dim=-1)
    scale = torch.tensor(20.0)
    matched = flyp_loss(embeds, embeds, scale, ["a", "b", "c", "d"])
    shuffled = flyp_loss(embeds, embeds.roll(1, dims=0), scale, ["a", "b", "c", "d"])
    assert matched < shuffled
    # Two faces with the same caption: swapping their texts changes nothing.
    same = ["a", "a", "c", "d"]
    swapped = embeds[[1, 0, 2, 3]]
    assert torch.isclose(
        flyp_loss(embeds, embeds, scale, same), flyp_loss(embeds, swapped, scale, same)
    )


def test_training_lowers_the_loss_and_saves_the_best_checkpoint(workspace, tmp_path):
    output = tmp_path / "run"
    metrics = train_profiler(_config(workspace, output, "epochs=4", "patience=10"))
    history = _history(output)
    assert len(history) == 4
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    for attribute in ("age_group", "gender", "ethnicity"):
        assert 0.0 <= metrics[attribute]["accuracy"] <= 1.0
        assert 0.0 <= metrics[attribute]["macro_f1"] <= 1.0
    assert "emotion" not in metrics  # no emotion labels in this data: not scored
    best = json.loads((output / "best" / "metrics.json").read_text())
    assert best["mean_macro_f1"] == max(h["mean_macro_f1"] for h in history)
    model, tokenizer = load_clip(output / "best", "cpu")  # a complete CLIP folder
    assert tokenizer("a photo of a man.")["input_ids"]
    original, _ = load_clip(workspace[0], "cpu")
    changed = [
        name
        for name, value in model.state_dict().items()
        if not torch.equal(value, original.state_dict()[name])
    ]
    assert any("text_model" in n for n in changed) and any("vision_model" in n for n in changed)


def test_early_stopping_after_patience_epochs_without_improvement(workspace, tmp_path):
    output = tmp_path / "run"
    train_profiler(_config(workspace, output, "epochs=10", "patience=2", "lr=0.0"))
    assert len(_history(output)) == 3  # best at epoch 1, then two epochs without improvement


def test_resume_continues_from_the_last_epoch(workspace, tmp_path):
    output = tmp_path / "run"
    train_profiler(_config(workspace, output, "epochs=1", "patience=10"))
    first_steps = _history(output)[0]["step"]
    train_profiler(_config(workspace, output, "epochs=2", "patience=10"))
    history = _history(output)
    assert [h["epoch"] for h in history] == [1, 2]
    assert history[1]["step"] == 2 * first_steps


def test_gradient_accumulation_takes_one_step_per_accumulated_batches(workspace, tmp_path):
    output = tmp_path / "run"
    train_profiler(_config(workspace, output, "epochs=1", "batch_size=4", "grad_accum=2"))
    assert _history(output)[0]["step"] == 16 // 4 // 2


def test_mim_masks_patches_and_trains_its_head(workspace, tmp_path):
    model, _ = load_clip(workspace[0], "cpu")
    mim = MaskedImageModelling(model.vision_model, 8, mask_ratio=0.5)
    pixels = torch.randn(2, 3, 32, 32)
    plain = model.vision_model(pixel_values=pixels).last_hidden_state
    loss = mim(pixels)
    loss.backward()
    assert torch.isfinite(loss) and mim.mask_token.grad is not None
    assert mim.mask_token.grad.abs().sum() > 0
    # The hook is inactive outside MIM: a plain forward is unchanged.
    assert torch.equal(plain, model.vision_model(pixel_values=pixels).last_hidden_state)

    output = tmp_path / "run"
    train_profiler(_config(workspace, output, "epochs=1", "mim_weight=1.0"))
    state = torch.load(output / "last" / "trainer_state.pt", weights_only=False)
    assert state["mim"]["head.weight"].shape == (8 * 8 * 3, 32)


def test_fairface_folder_reads_splits_and_the_more_than_70_alias(tmp_path):
    folder = make_face_dataset(tmp_path / "faces", count=40, size=16)
    train, val = read_face_dataset(folder)
    assert len(train) == 40 and len(val) == 10
    assert "more than 70" in (folder / "fairface_label_train.csv").read_text()  # seeded data
    assert any(r.age_group == "70+" for r in train)
    assert all(r.age_group in labels.AGE_GROUPS and r.image.is_file() for r in train + val)
    assert train[0].caption.startswith("The person appears to be")


def test_csv_and_jsonl_manifests_with_aliases_and_held_out_validation(tmp_path):
    (tmp_path / "faces.csv").write_text(
        "image,age,gender,ethnicity,emotion\n"
        "a.png,34,female,latino hispanic,happy\n"
        "b.png,more than 70,Male,,\n"
        "c.png,3-9,Male,East Asian,\n"
    )
    train, val = read_face_dataset(tmp_path / "faces.csv", val_fraction=0.3, seed=1)
    records = {r.image.name: r for r in train + val}
    assert len(train) == 2 and len(val) == 1
    assert records["a.png"].age_group == "30-39" and records["a.png"].ethnicity == "Latino_Hispanic"
    assert records["a.png"].emotion == "happy" and records["b.png"].age_group == "70+"
    assert records["b.png"].ethnicity == labels.UNKNOWN
    (tmp_path / "faces.jsonl").write_text(
        '{"file": "x.png", "gender": "Female", "split": "train"}\n'
        '{"file": "y.png", "gender": "Male", "split": "val"}\n'
    )
    train, val = read_face_dataset(tmp_path / "faces.jsonl")
    assert [r.gender for r in train] == ["Female"] and [r.gender for r in val] == ["Male"]


def test_bad_labels_and_missing_manifests_name_the_problem(tmp_path):
    (tmp_path / "bad.csv").write_text("image,gender\na.png,robot\n")
    with pytest.raises(DatasetError, match=r"bad\.csv:2: gender 'robot'"):
        read_face_dataset(tmp_path / "bad.csv")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"fairface_label_train\.csv"):
        read_face_dataset(tmp_path / "empty")
