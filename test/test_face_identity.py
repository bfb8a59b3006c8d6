"""The dlib_resnet face identity backend on real crops from the project's own pipeline."""

from __future__ import annotations

import builtins
import os
import shutil
import signal

import cv2
import numpy as np
import pytest
import skimage.data

from uservlm_ros.backends.face_detector import DETECTORS, DetectorOptions
from uservlm_ros.backends.face_identity import (
    DESCRIPTOR_FILE,
    IDENTITY,
    LANDMARKS_FILE,
    IdentityOptions,
)
from uservlm_ros.core.alignment import align_face
from uservlm_ros.core.errors import ConfigError, ModelLoadError
from uservlm_ros.sim.photos import astronaut, grace_hopper

# The calibrated thresholds (bench/identity.py, docs/models.md#face-identity).
MATCH_DISTANCE, AMBIGUITY_MARGIN = 0.35, 0.10


@pytest.fixture(scope="module")
def identity():
    return IDENTITY.create("dlib_resnet", IdentityOptions())


@pytest.fixture(scope="module")
def detector():
    return DETECTORS.create("blazeface_full", DetectorOptions())


def crop(detector, photo: np.ndarray, scale: float = 1.0, mirror: bool = False) -> np.ndarray:
    """face_crop_node's aligned crop of the largest face of a (scaled, mirrored) photo."""
    if scale != 1.0:
        photo = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    if mirror:
        photo = np.ascontiguousarray(photo[:, ::-1])
    detection = max(detector.detect(photo), key=lambda d: d.box.area)
    return align_face(photo, detection).image


def cameraman() -> np.ndarray:
    return cv2.cvtColor(skimage.data.camera(), cv2.COLOR_GRAY2RGB)


def distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b))


def test_one_person_scaled_and_mirrored_matches(identity, detector):
    reference = identity.embed(crop(detector, astronaut()))
    assert reference.shape == (identity.dim,) == (128,) and reference.dtype == np.float32
    for scale, mirror in ((0.4, False), (1.0, True), (0.6, True)):
        embedding = identity.embed(crop(detector, astronaut(), scale, mirror))
        assert distance(reference, embedding) < MATCH_DISTANCE, (scale, mirror)


def test_different_people_are_beyond_the_match_distance_and_margin(identity, detector):
    embeddings = [identity.embed(crop(detector, p)) for p in (astronaut(), grace_hopper())]
    embeddings.append(identity.embed(crop(detector, cameraman())))
    for i in range(3):
        for j in range(i + 1, 3):
            assert distance(embeddings[i], embeddings[j]) > MATCH_DISTANCE + AMBIGUITY_MARGIN


def test_any_crop_size_from_64_works(identity, detector):
    big = crop(detector, grace_hopper())
    reference = identity.embed(big)
    small = cv2.resize(big, (96, 96), interpolation=cv2.INTER_AREA)
    assert distance(reference, identity.embed(small)) < MATCH_DISTANCE


@pytest.mark.parametrize("fill", [0, 128, 255])
def test_a_crop_without_a_face_gives_none(identity, fill):
    assert identity.embed(np.full((224, 224, 3), fill, np.uint8)) is None


def test_a_plain_texture_gives_none(identity):
    brick = cv2.resize(skimage.data.brick(), (224, 224), interpolation=cv2.INTER_AREA)
    assert identity.embed(cv2.cvtColor(brick, cv2.COLOR_GRAY2RGB)) is None


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((224, 224, 3), np.float32),
        np.zeros((224, 224), np.uint8),
        np.zeros((224, 224, 4), np.uint8),
        np.zeros((100, 5, 3), np.uint8),
        np.zeros((224, 200, 3), np.uint8),
        np.zeros((32, 32, 3), np.uint8),
        [[0, 0, 0]],
    ],
)
def test_bad_crops_raise_one_clear_line(identity, bad):
    with pytest.raises(ValueError) as error:
        identity.embed(bad)
    message = str(error.value)
    assert "face crop must be" in message and "\n" not in message


def test_unknown_backend_lists_the_known_ones():
    with pytest.raises(ConfigError, match="unknown identity backend 'arcface'; known: dlib_resnet"):
        IDENTITY.create("arcface", IdentityOptions())
    assert IDENTITY.names == ("dlib_resnet",)


@pytest.mark.parametrize(
    ("options", "problem"),
    [({"crop_margin": -0.1}, "crop_margin"), ({"num_jitters": 101}, "jitters")],
)
def test_bad_options_are_config_errors(options, problem):
    with pytest.raises(ConfigError, match=problem):
        IdentityOptions(**options)


def test_missing_dlib_names_the_package(monkeypatch):
    real_import = builtins.__import__

    def no_dlib(name, *args, **kwargs):
        if name == "dlib":
            raise ImportError("No module named 'dlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_dlib)
    with pytest.raises(ConfigError, match="pip install dlib-bin"):
        IDENTITY.create("dlib_resnet", IdentityOptions())


def test_missing_weights_name_the_path(tmp_path, identity):
    shutil.copy(identity.folder / LANDMARKS_FILE, tmp_path / LANDMARKS_FILE)
    with pytest.raises(ModelLoadError, match=str(tmp_path / DESCRIPTOR_FILE)):
        IDENTITY.create("dlib_resnet", IdentityOptions(path=str(tmp_path)))
    with pytest.raises(ModelLoadError, match=str(tmp_path / "nowhere" / LANDMARKS_FILE)):
        IDENTITY.create("dlib_resnet", IdentityOptions(path=str(tmp_path / "nowhere")))


def test_corrupt_weights_are_named(tmp_path):
    (tmp_path / LANDMARKS_FILE).write_bytes(b"not a dlib model")
    (tmp_path / DESCRIPTOR_FILE).write_bytes(b"not a dlib model")
    with pytest.raises(ModelLoadError, match=f"{tmp_path / LANDMARKS_FILE} is corrupt"):
        IDENTITY.create("dlib_resnet", IdentityOptions(path=str(tmp_path)))


def test_the_embedding_is_never_in_repr_or_str(identity, detector):
    embedding = identity.embed(crop(detector, astronaut()))
    shown = repr(identity) + str(identity)
    assert "dlib_resnet" in shown
    for value in embedding[:8]:
        assert f"{value:.3f}" not in shown


def test_the_identity_process_embeds_as_in_process_and_survives_its_child(identity, detector):
    from uservlm_ros.backends.identity_process import IdentityProcess

    face = crop(detector, astronaut())
    child = IdentityProcess("dlib_resnet")
    try:
        assert child.model_id == identity.model_id and child.dim == 128
        np.testing.assert_allclose(child.embed(face), identity.embed(face), atol=1e-6)
        assert child.embed(np.full((96, 96, 3), 128, np.uint8)) is None
        with pytest.raises(ValueError, match="square"):
            child.embed(np.zeros((100, 5, 3), np.uint8))
        os.kill(child._child.pid, signal.SIGINT)  # Ctrl-C reaches the group: the node decides
        assert child.embed(face) is not None and child.restarts == 0
        child._child.kill()  # died (out of memory, say): the next face starts a new one
        child._child.wait()
        assert child.embed(face) is not None and child.restarts == 1
        assert "pid=" in repr(child) and "[" not in repr(child)
    finally:
        child.close()
    assert child._child.returncode == 0  # its stdin closed: it ended by itself


def test_the_identity_process_reports_a_bad_backend_in_one_line(tmp_path):
    from uservlm_ros.backends.identity_process import IdentityProcess

    with pytest.raises(ConfigError, match="unknown identity backend 'nope'"):
        IdentityProcess("nope")
    with pytest.raises(ModelLoadError, match=str(tmp_path)):
        IdentityProcess("dlib_resnet", IdentityOptions(path=str(tmp_path)))
