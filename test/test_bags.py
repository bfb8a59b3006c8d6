"""Record -> replay round trip over real DDS, with uservlm's own types, in both storages."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import sample_messages
from harness import wait_until
from rclpy.serialization import deserialize_message
from sample_messages import same_message
from sensor_msgs.msg import Image
from uservlm.msg import FaceArray, UserProfile

from uservlm_ros.eval.bag_types import typestore
from uservlm_ros.eval.bags import iter_bag, record, replay
from uservlm_ros.ros.qos import LATCHED_QOS, SENSOR_QOS


@pytest.mark.graph
@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_record_then_replay_round_trip(ros, tmp_path, storage):
    bag = tmp_path / f"session_{storage}"
    faces_pub = ros.publisher(FaceArray, "/uservlm/faces")
    profile_pub = ros.publisher(UserProfile, "/uservlm/user_profile", LATCHED_QOS)
    image_pub = ros.publisher(Image, "/camera/image_raw", SENSOR_QOS)
    profile_pub.publish(sample_messages.user_profile())  # latched before the recorder starts

    stop = threading.Event()
    result = {}
    recorder = threading.Thread(
        target=lambda: result.update(
            stats=record(bag, storage=storage, stop=stop, progress=None, images="raw")
        )
    )
    recorder.start()
    wait_until(lambda: ros.node.count_subscribers("/uservlm/faces") >= 1, 10, "the recorder")
    wait_until(lambda: ros.node.count_subscribers("/camera/image_raw") >= 1, 10, "the recorder")
    time.sleep(0.3)
    faces = sample_messages.face_array()
    for index in range(5):
        faces.faces[0].track_id = index + 1
        faces_pub.publish(faces)
        image_pub.publish(sample_messages.crop_image(32))
        time.sleep(0.05)
    time.sleep(0.5)
    stop.set()
    recorder.join(10)
    assert result["stats"].messages >= 11  # 5 faces + 5 images + the latched profile

    recorded = list(iter_bag(bag))
    by_topic = {}
    for message in recorded:
        by_topic.setdefault(message.topic, []).append(message)
    assert [m.msgtype for m in by_topic["/uservlm/faces"]] == ["uservlm/msg/FaceArray"] * 5
    assert len(by_topic["/uservlm/user_profile"]) == 1
    assert len(by_topic["/camera/image_raw"]) == 5
    # The bag holds CDR as received, readable as uservlm types by rclpy and by rosbags.
    profile = deserialize_message(by_topic["/uservlm/user_profile"][0].data, UserProfile)
    assert same_message(profile, sample_messages.user_profile())
    decoded = typestore().deserialize_cdr(
        by_topic["/uservlm/faces"][2].data, "uservlm/msg/FaceArray"
    )
    assert decoded.faces[0].track_id == 3

    # Replay into the live graph at double speed: same bytes, same order, time compressed.
    got_faces = ros.subscribe(FaceArray, "/uservlm/faces")
    got_profiles = ros.subscribe(UserProfile, "/uservlm/user_profile", LATCHED_QOS)
    begin = time.monotonic()
    count = replay(bag, rate=2.0, topics=["/uservlm/faces", "/uservlm/user_profile"], progress=None)
    elapsed = time.monotonic() - begin
    assert count == 6
    received = got_faces.wait_for(5, timeout=10)
    assert [f.faces[0].track_id for f in received] == [1, 2, 3, 4, 5]
    assert got_profiles.wait_for(1)[0].profile_text == sample_messages.user_profile().profile_text
    span = (
        by_topic["/uservlm/faces"][-1].timestamp_ns
        - by_topic["/uservlm/user_profile"][0].timestamp_ns
    ) / 1e9
    assert elapsed >= span / 2.0  # original timing kept (scaled by the rate)


def test_record_refuses_an_existing_folder(tmp_path, rclpy_session):
    from uservlm_ros.core.errors import UservlmError

    with pytest.raises(UservlmError, match="exists"):
        record(tmp_path, progress=None, duration_s=0.1)


def _mixed_bag(path, frames: int = 3, sensors: bool = True) -> dict[str, int]:
    """A bag as `uservlm record` writes it: camera frames, audio, and the graph's outputs."""
    from rclpy.serialization import serialize_message
    from rosbags.rosbag2 import StoragePlugin, Writer

    from uservlm_ros.eval.bag_types import type_name
    from uservlm_ros.eval.bags import _bag_qos

    content = {
        "/uservlm/response": [sample_messages.response()],
        "/uservlm/user_profile": [sample_messages.user_profile()],
    }
    if sensors:
        content["/camera/image_raw"] = [sample_messages.crop_image(16) for _ in range(frames)]
        content["/uservlm/audio"] = [sample_messages.audio_chunk()]
    stamp = 1_700_000_000_000_000_000
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        for topic, messages in content.items():
            connection = writer.add_connection(
                topic,
                type_name(type(messages[0])),
                typestore=typestore(),
                offered_qos_profiles=[_bag_qos(True, False)],
            )
            for message in messages:
                stamp += 20_000_000
                writer.write(connection, stamp, serialize_message(message))
    return {topic: len(messages) for topic, messages in content.items()}


@pytest.mark.graph
def test_replay_publishes_the_sensor_topics_unless_outputs_are_asked_for(ros, tmp_path):
    from uservlm.msg import AudioChunk, Response

    counts = _mixed_bag(tmp_path / "bag")
    responses = ros.subscribe(Response, "/uservlm/response", 100)
    images = ros.subscribe(Image, "/camera/image_raw", 100)
    audio = ros.subscribe(AudioChunk, "/uservlm/audio", 100)

    played = replay(tmp_path / "bag", rate=10.0, progress=None)
    assert played == counts["/camera/image_raw"] + counts["/uservlm/audio"]
    images.wait_for(counts["/camera/image_raw"])
    audio.wait_for(1)
    time.sleep(0.3)
    assert responses.messages == []  # a live bridge would have said it again

    played = replay(tmp_path / "bag", rate=10.0, progress=None, outputs=True)
    assert played == sum(counts.values())
    assert responses.wait_for(1)[0].text == sample_messages.response().text


def test_replay_of_a_bag_without_sensor_topics_says_how_to_replay_its_outputs(
    tmp_path, rclpy_session
):
    from uservlm_ros.core.errors import UservlmError

    _mixed_bag(tmp_path / "bag", sensors=False)
    with pytest.raises(UservlmError, match=r"has none of the topics.*--outputs"):
        replay(tmp_path / "bag", progress=None)


def _cli(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "uservlm_ros.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def test_replay_of_a_missing_bag_is_one_line_and_an_error_code(tmp_path):
    process = _cli("replay", str(tmp_path / "nonexistent"))
    _, err = process.communicate(timeout=60)
    assert process.returncode == 2
    assert err.strip().splitlines() == [
        f"uservlm replay: cannot read bag {tmp_path / 'nonexistent'}: no such file or folder"
    ]


@pytest.mark.graph
def test_replay_ends_cleanly_on_sigterm(ros, tmp_path):
    _mixed_bag(tmp_path / "bag", frames=50)
    images = ros.subscribe(Image, "/camera/image_raw")
    process = _cli("replay", str(tmp_path / "bag"), "--loop")
    try:
        images.wait_for(3, timeout=30)  # publishing
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "Traceback" not in err and "RCLError" not in err
    assert "replayed" in err


@pytest.mark.graph
def test_jpeg_recording_is_smaller_and_replays_as_images(ros, tmp_path):
    """Default recording: frames as JPEG CompressedImage on <topic>/compressed; replay decodes
    them back to sensor_msgs/Image on the camera topic; eval reads them (iter_frames)."""
    from uservlm_ros.eval.bags import iter_frames
    from uservlm_ros.ros.conversions import image_to_rgb, rgb_to_image
    from uservlm_ros.sim.photos import frame_with_faces

    rgb = frame_with_faces(1)  # VGA
    header = sample_messages.crop_image(8).header
    image_pub = ros.publisher(Image, "/camera/image_raw", SENSOR_QOS)
    sizes = {}
    for images in ("jpeg", "raw"):
        bag = tmp_path / images
        stop = threading.Event()
        recorder = threading.Thread(
            target=record,
            args=(bag,),
            kwargs={
                "topics": ["/camera/image_raw"],
                "stop": stop,
                "progress": None,
                "images": images,
            },
        )
        recorder.start()
        wait_until(lambda: ros.node.count_subscribers("/camera/image_raw") >= 1, 10, "recorder")
        time.sleep(0.3)
        for _ in range(5):
            image_pub.publish(rgb_to_image(rgb, header))
            time.sleep(0.05)
        time.sleep(0.5)
        stop.set()
        recorder.join(10)
        wait_until(lambda: ros.node.count_subscribers("/camera/image_raw") == 0, 10, "unsubscribed")
        sizes[images] = sum(f.stat().st_size for f in bag.rglob("*") if f.is_file())
    topics = {m.topic: m.msgtype for m in iter_bag(tmp_path / "jpeg")}
    assert topics == {"/camera/image_raw/compressed": "sensor_msgs/msg/CompressedImage"}
    assert sizes["jpeg"] * 5 < sizes["raw"]

    frames = list(iter_frames(tmp_path / "jpeg", "/camera/image_raw"))
    assert len(frames) == 5
    assert frames[0][1].shape == rgb.shape
    assert np.abs(frames[0][1].astype(int) - rgb).mean() < 4  # JPEG q90: close, not exact

    received = ros.subscribe(Image, "/camera/image_raw", SENSOR_QOS)
    assert replay(tmp_path / "jpeg", rate=10.0, progress=None) == 5
    got = received.wait_for(5)
    assert image_to_rgb(got[0]).shape == rgb.shape


@pytest.mark.parametrize("frames", ["-3", "0"])
def test_sample_bag_with_too_few_frames_is_one_line_and_leaves_nothing(tmp_path, frames):
    cli = [sys.executable, "-m", "uservlm_ros.cli", "sample-bag"]
    done = subprocess.run(
        [*cli, str(tmp_path / "s"), "--frames", frames],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"uservlm sample-bag: a sample bag needs at least 12 frames, got {frames}"
    ]
    assert not (tmp_path / "s").exists()
