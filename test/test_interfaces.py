"""The uservlm interfaces: serialization, transport between processes, the Respond action."""

from __future__ import annotations

from pathlib import Path

import pytest
import sample_messages
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message, serialize_message
from sample_messages import same_message
from uservlm.action import Respond
from uservlm.msg import FaceArray, UserProfile

from uservlm_ros.ros.respond_client import GoalSafeActionClient

PEER = str(Path(__file__).parent / "peers" / "interface_peer.py")
LATCHED = QoSProfile(
    depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
)


@pytest.mark.parametrize("name", list(sample_messages.all_interfaces()))
def test_interface_round_trips_through_serialization(name):
    message = sample_messages.all_interfaces()[name]
    data = serialize_message(message)
    assert len(data) > 4
    back = deserialize_message(data, type(message))
    assert same_message(back, message), name


def test_every_field_of_the_interfaces_is_commented():
    root = Path(__file__).resolve().parents[1]
    for path in sorted([*root.glob("msg/*.msg"), *root.glob("action/*.action")]):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0].strip()
            if code and code != "---":
                assert "#" in line, f"{path.name}:{number} has no comment: {line!r}"


def test_user_profile_keeps_full_probability_vectors():
    profile = sample_messages.user_profile()
    back = deserialize_message(serialize_message(profile), UserProfile)
    assert len(back.age_group.label_names) == 9
    assert len(back.age_group.probabilities) == 9
    assert sum(back.age_group.probabilities) == pytest.approx(1.0, abs=1e-5)
    assert back.ethnicity.known is False and back.ethnicity.label == "unknown"


@pytest.mark.graph
def test_face_array_and_profile_travel_between_processes(ros, processes):
    peer = processes.start_python("interface_peer", PEER)
    peer.wait_for_output("interface_peer ready")
    faces_back = ros.subscribe(FaceArray, "/peer/faces_out")
    profiles_back = ros.subscribe(UserProfile, "/peer/profile_out", LATCHED)
    faces_pub = ros.publisher(FaceArray, "/peer/faces_in")
    profile_pub = ros.publisher(UserProfile, "/peer/profile_in", LATCHED)
    ros.wait_for_subscribers("/peer/faces_in")
    ros.wait_for_publishers("/peer/faces_out")

    sent_faces = sample_messages.face_array()
    sent_profile = sample_messages.user_profile()
    profile_pub.publish(sent_profile)
    faces_pub.publish(sent_faces)

    got_faces = faces_back.wait_for(1, timeout=15)[0]
    got_profile = profiles_back.wait_for(1, timeout=15)[0]
    crop = got_faces.faces[0].crop
    assert (crop.width, crop.height, crop.encoding) == (224, 224, "rgb8")
    assert bytes(crop.data) == bytes(sent_faces.faces[0].crop.data)
    assert same_message(got_faces, sent_faces)
    assert same_message(got_profile, sent_profile)


@pytest.mark.graph
def test_respond_action_between_processes_with_feedback(ros, processes):
    peer = processes.start_python("interface_peer", PEER)
    peer.wait_for_output("interface_peer ready")
    # uservlm's client: rclpy's own can lose a fast reply (respond_client.GoalSafeActionClient).
    client = GoalSafeActionClient(ros.node, Respond, "/peer/respond")
    assert client.wait_for_server(timeout_sec=15)
    feedback: list[str] = []
    goal = sample_messages.respond_goal()
    sent = client.send_goal_async(
        goal, feedback_callback=lambda f: feedback.append(f.feedback.partial_text)
    )
    handle = wait_future(sent)
    assert handle.accepted
    result = wait_future(handle.get_result_async()).result
    assert result.response.text == goal.question.upper()
    assert result.response.track_id == goal.track_id
    assert result.response.mode == "profile_prompt"
    assert feedback[-1] == goal.question.upper()
    assert len(feedback) == len(goal.question.split())


def wait_future(future, timeout: float = 15.0):
    from harness import wait_until

    wait_until(future.done, timeout, "an action future")
    return future.result()


def test_package_xml_is_a_valid_format_3_manifest():
    from catkin_pkg.package import parse_package

    package = parse_package(str(Path(__file__).resolve().parents[1] / "package.xml"))
    package.validate()
    assert package.package_format == 3
    assert package.name == "uservlm"
    assert package.licenses == ["Apache-2.0"]
    assert package.maintainers and "@" in package.maintainers[0].email
    group = [g.name for g in package.member_of_groups]
    assert "rosidl_interface_packages" in group
