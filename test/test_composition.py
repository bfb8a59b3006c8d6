"""Composition: several nodes in one process (nodes/container.py) handing messages over directly
(ros/intra_process.py), still publishing to DDS for everybody else."""

from __future__ import annotations

import time

import pytest
from diagnostic_msgs.msg import DiagnosticArray
from harness import wait_until
from perception_graph import camera_publisher, diagnostic_value, image_msg
from perception_images import astronaut
from std_msgs.msg import String
from uservlm.msg import FaceArray, UserProfile

from uservlm_ros.nodes.catalogue import composable
from uservlm_ros.nodes.container import node_names
from uservlm_ros.ros.diagnostics import Diagnostics
from uservlm_ros.ros.intra_process import (
    IntraProcessPublisher,
    IntraProcessSubscription,
    intra_process_subscription,
)
from uservlm_ros.ros.qos import LATCHED_QOS, RELIABLE_QOS


@pytest.fixture
def nodes(rclpy_session, request):
    """Nodes of this process, like the nodes of a container; destroyed at teardown."""
    import rclpy

    made = []

    def make(name: str, namespace: str = ""):
        node = rclpy.create_node(f"{name}_{request.node.name}"[:60], namespace=namespace)
        made.append(node)
        return node

    yield make
    for node in made:
        node.destroy_node()


def test_a_subscriber_of_the_same_process_gets_the_message_object_itself(nodes):
    producer, consumer = nodes("producer"), nodes("consumer")
    publisher = IntraProcessPublisher(producer, String, "composition/a", RELIABLE_QOS)
    got: list[String] = []
    subscription = intra_process_subscription(
        consumer, String, "composition/a", got.append, RELIABLE_QOS
    )
    assert isinstance(subscription, IntraProcessSubscription)
    assert consumer.count_subscribers("/composition/a") == 0  # no DDS reader was made
    msg = String(data="frame 1")
    publisher.publish(msg)
    assert got == [msg] and got[0] is msg  # handed over, not copied
    assert publisher.get_subscription_count() == 1
    subscription.destroy()
    publisher.publish(String(data="frame 2"))
    assert len(got) == 1
    publisher.destroy()


def test_other_processes_still_get_the_topic_over_dds(ros, nodes):
    producer, consumer = nodes("producer"), nodes("consumer")
    publisher = IntraProcessPublisher(producer, String, "composition/b", RELIABLE_QOS)
    local: list[String] = []
    intra_process_subscription(consumer, String, "composition/b", local.append, RELIABLE_QOS)
    remote = ros.subscribe(String, "/composition/b", RELIABLE_QOS)  # a DDS reader
    wait_until(lambda: publisher.publisher.get_subscription_count() == 1, 10, "DDS matching")
    publisher.publish(String(data="hello"))
    assert [m.data for m in remote.wait_for(1)] == ["hello"]
    assert [m.data for m in local] == ["hello"]


def test_a_failing_local_subscriber_is_logged_and_the_others_still_get_the_message(nodes):
    producer = nodes("producer")
    publisher = IntraProcessPublisher(producer, String, "composition/c", RELIABLE_QOS)

    def broken(msg):
        raise ValueError("bad message")

    taker = nodes("broken")
    taker.diagnostics = Diagnostics(taker, hardware_id="test")
    failing = intra_process_subscription(taker, String, "composition/c", broken, RELIABLE_QOS)
    got: list[String] = []
    intra_process_subscription(nodes("ok"), String, "composition/c", got.append, RELIABLE_QOS)
    publisher.publish(String(data="x"))  # does not raise in the publisher's thread
    publisher.publish(String(data="y"))
    assert failing.failures == 2
    assert taker.diagnostics.values["intra_process_errors"] == 2
    taker.diagnostics.destroy()
    assert [m.data for m in got] == ["x", "y"]


def test_dds_is_used_when_the_topic_is_not_published_in_this_process(nodes):
    consumer = nodes("consumer")
    # subscribed before any local publisher exists, or under another namespace: DDS readers
    early = intra_process_subscription(consumer, String, "composition/d", print, RELIABLE_QOS)
    producer = nodes("producer")
    publisher = IntraProcessPublisher(producer, String, "composition/d", RELIABLE_QOS)
    elsewhere = intra_process_subscription(
        nodes("robot2", namespace="/robot2"), String, "composition/d", print, RELIABLE_QOS
    )
    assert not isinstance(early, IntraProcessSubscription)
    assert not isinstance(elsewhere, IntraProcessSubscription)
    assert elsewhere.topic_name == "/robot2/composition/d"
    publisher.destroy()
    # with its only publisher gone, a new subscriber goes to DDS again
    late = intra_process_subscription(consumer, String, "composition/d", print, RELIABLE_QOS)
    assert not isinstance(late, IntraProcessSubscription)


def test_a_transient_local_topic_always_reaches_the_dds_history(ros, nodes):
    producer = nodes("producer")
    publisher = IntraProcessPublisher(producer, String, "composition/e", LATCHED_QOS)
    intra_process_subscription(nodes("local"), String, "composition/e", print, LATCHED_QOS)
    publisher.publish(String(data="latched"))  # nobody over DDS yet
    late = ros.subscribe(String, "/composition/e", LATCHED_QOS)
    assert [m.data for m in late.wait_for(1)] == ["latched"]


def test_container_arguments():
    assert node_names(["face_crop_node", "user_profiler_node", "--ros-args", "-r", "a:=b"]) == [
        "face_crop_node",
        "user_profiler_node",
    ]
    with pytest.raises(ValueError, match="name the nodes to run"):
        node_names(["--ros-args"])
    with pytest.raises(ValueError, match="cannot run speech_node, nope in a container"):
        node_names(["speech_node", "nope"])
    with pytest.raises(ValueError, match="face_crop_node named twice"):
        node_names(["face_crop_node", "face_crop_node"])
    assert "speech_node" not in composable()


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "name the nodes to run"),
        (["speech_node"], "cannot run speech_node in a container"),
    ],
)
def test_the_container_refuses_bad_node_lists_in_one_line(processes, argv, message):
    container = processes.start_python("container", "-m", "uservlm_ros.nodes.container", *argv)
    assert container.popen.wait(30) == 2
    output = container.output().strip()
    assert output.startswith("container: ") and message in output
    assert len(output.splitlines()) == 1


@pytest.mark.graph
def test_a_container_runs_face_crop_and_profiler_as_one_process(ros, processes):
    container = processes.start_python(
        "perception",
        "-m",
        "uservlm_ros.nodes.container",
        "face_crop_node",
        "user_profiler_node",
        "--ros-args",
        "-p",
        "debug_image:=false",
    )
    container.wait_for_output("user_profiler_node active", timeout=60)
    output = container.output()
    assert "/uservlm/faces is taken from a node of this process, not DDS" in output
    # both nodes keep their names, and their diagnostics
    wait_until(
        lambda: {"face_crop_node", "user_profiler_node"} <= set(ros.node.get_node_names()),
        15,
        "both node names in the graph",
    )
    diagnostics = ros.subscribe(DiagnosticArray, "/diagnostics")
    faces = ros.subscribe(FaceArray, "/uservlm/faces", RELIABLE_QOS)
    profiles = ros.subscribe(UserProfile, "/uservlm/user_profile", LATCHED_QOS)
    camera = camera_publisher(ros)
    ros.wait_for_subscribers("/camera/image_raw")
    ros.wait_for_publishers(
        "/uservlm/faces"
    )  # only this test subscribes: the profiler takes them locally
    ros.wait_for_publishers("/uservlm/user_profile")
    sent = image_msg(astronaut())

    def profiled() -> bool:
        if not profiles.messages:
            camera.publish(sent)
            time.sleep(0.3)
        return bool(profiles.messages)

    wait_until(profiled, 30, "a profile of the photo")
    profile = profiles.messages[-1]
    assert profile.header.stamp == sent.header.stamp
    assert profile.age_group.known
    # the faces were handed over (the profiler made no DDS reader of them) and still published
    # to DDS for this test
    assert ros.node.count_subscribers("/uservlm/faces") == 1
    assert faces.wait_for(1)[0].faces
    wait_until(
        lambda: (
            diagnostic_value(diagnostics, "user_profiler_node", "face_arrays_received")
            and diagnostic_value(diagnostics, "face_crop_node", "frames_processed")
        ),
        15,
        "both nodes' diagnostics",
    )
    assert container.stop() == 0
