"""Record -> replay round trip over real DDS, with uservlm's own types, in both storages."""

from __future__ import annotations

import threading
import time

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
        target=lambda: result.update(stats=record(bag, storage=storage, stop=stop, progress=None))
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
