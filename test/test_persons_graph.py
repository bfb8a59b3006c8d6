"""Persons through the running user_profiler_node: a face that leaves and comes back is the same
person (dlib embeddings of real photos), another face is another person, forgetting works, the
opt-in database is written 0600, and identity off leaves every track anonymous."""

from __future__ import annotations

import re
import stat
import time

import pytest
from harness import wait_until
from hri_msgs.msg import IdsList
from perception_images import astronaut, grace_hopper
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import String
from test_perception_profiler import face_array_of, start_node
from uservlm.msg import FaceArray, UserProfile
from uservlm.srv import ForgetPersons

from uservlm_ros.backends.face_detector import DETECTORS, DetectorOptions
from uservlm_ros.core import persons
from uservlm_ros.core.alignment import align_face
from uservlm_ros.ros.qos import LATCHED_QOS, RELIABLE_QOS

FAST = ("fusion.expiry_s:=1.0", "identity.retry_s:=0.1")
HRI_LATCHED = QoSProfile(
    depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
)


@pytest.fixture(scope="module")
def crops():
    detector = DETECTORS.create("blazeface_full", DetectorOptions())
    return {
        p.__name__: align_face(p(), detector.detect(p())[0]).image
        for p in (astronaut, grace_hopper)
    }


class Scene:
    """Feeds the profiler FaceArrays of chosen tracks at ~10 Hz and reads its profiles."""

    def __init__(self, ros) -> None:
        self.ros = ros
        self.profiles = ros.subscribe(UserProfile, "/uservlm/user_profile", LATCHED_QOS)
        self.faces = ros.publisher(FaceArray, "/uservlm/faces", RELIABLE_QOS)
        self.known = ros.subscribe(IdsList, "/humans/persons/known", HRI_LATCHED)
        ros.wait_for_subscribers("/uservlm/faces")

    @staticmethod
    def frame(crop, track_id: int) -> FaceArray:
        array = face_array_of(crop, track_id)
        face = array.faces[0]
        face.xmin, face.ymin, face.xmax, face.ymax = 0.4, 0.3, 0.6, 0.6
        return array

    def of_track(self, track_id: int) -> list[UserProfile]:
        return [p for p in self.profiles.messages if p.track_id == track_id]

    def show_until_identified(self, crop, track_id: int, timeout: float = 20.0) -> UserProfile:
        def identified() -> bool:
            self.faces.publish(self.frame(crop, track_id))
            time.sleep(0.1)
            return any(not p.anonymous for p in self.of_track(track_id))

        wait_until(identified, timeout, f"track {track_id} identified as a known person")
        return next(p for p in reversed(self.of_track(track_id)) if not p.anonymous)

    def nobody_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.faces.publish(FaceArray(header=face_array_of(astronaut()[:8, :8]).header))
            time.sleep(0.1)


def forget(ros, person_id: str) -> ForgetPersons.Response:
    client = ros.node.create_client(ForgetPersons, "/uservlm/forget_persons")
    assert client.wait_for_service(timeout_sec=15)
    future = client.call_async(ForgetPersons.Request(person_id=person_id))
    wait_until(future.done, 10, "the forget service's answer")
    return future.result()


@pytest.mark.graph
def test_a_returning_face_is_the_same_person_and_can_be_forgotten(ros, processes, crops, tmp_path):
    database = tmp_path / "persons.json"
    node = start_node(processes, "user_profiler_node", *FAST, f"persons.database:={database}")
    node.wait_for_output("face identity", timeout=30)
    node.wait_for_output("user_profiler_node active", timeout=30)
    scene = Scene(ros)

    first = scene.show_until_identified(crops["astronaut"], track_id=1)
    anonymous = scene.of_track(1)[0]
    assert anonymous.person_id in (persons.anonymous_id(1), first.person_id)
    assert len(first.person_id) == 5 and first.visits == 1
    scene.nobody_for(2.0)  # track 1 ends (fusion.expiry_s 1 s)

    back = scene.show_until_identified(crops["astronaut"][:, ::-1].copy(), track_id=2)
    assert back.person_id == first.person_id and back.visits == 2
    assert back.observations > first.observations  # the profile continued
    other = scene.show_until_identified(crops["grace_hopper"], track_id=3)
    assert other.person_id != first.person_id and other.visits == 1
    # the same persons on REP-155's topics, as libhri reads them (reliable, latched); REP-155
    # goes out per camera frame, so the frames keep coming
    face_of = ros.subscribe(String, f"/humans/persons/{other.person_id}/face_id", HRI_LATCHED)

    def published() -> bool:
        scene.faces.publish(scene.frame(crops["grace_hopper"], 3))
        time.sleep(0.1)
        known = any(first.person_id in m.ids for m in scene.known.messages)
        return known and "f3" in [m.data for m in face_of.messages]

    wait_until(published, 10, "persons/known and the person's face_id")
    missing = forget(ros, "nosuch")
    assert not missing.success and "no known person" in missing.message
    answer = forget(ros, first.person_id)
    assert answer.success and answer.forgotten == 1
    assert stat.S_IMODE(database.stat().st_mode) == 0o600
    assert first.person_id not in database.read_text() and other.person_id in database.read_text()
    everyone = forget(ros, "")
    assert everyone.success and everyone.forgotten == 1
    assert not re.search(r"(-?\d\.\d+[,\s]+){8}", node.output())  # no vector is ever logged


@pytest.mark.graph
def test_identity_off_every_track_is_an_anonymous_person(ros, processes, crops):
    node = start_node(processes, "user_profiler_node", *FAST, "enable.identity:=false")
    node.wait_for_output("user_profiler_node active", timeout=30)
    scene = Scene(ros)

    def profiled() -> bool:
        scene.faces.publish(scene.frame(crops["astronaut"], 4))
        time.sleep(0.1)
        return len(scene.of_track(4)) >= 3

    wait_until(profiled, 15, "profiles of track 4")
    assert {(p.person_id, p.anonymous, p.visits) for p in scene.of_track(4)} == {
        (persons.anonymous_id(4), True, 1)
    }
