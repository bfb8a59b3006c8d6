"""Whom an answer is for and what the model sees of them (pure: no ROS graph)."""

from __future__ import annotations

import numpy as np
import pytest

from uservlm_ros.core import addressee as A
from uservlm_ros.core.addressee import Seen, choose_addressee, head_and_shoulders, image_roi
from uservlm_ros.sim.photos import frame_with_people

NOW = 100.0
LEFT = (0.10, 0.30, 0.25, 0.50)
RIGHT = (0.60, 0.25, 0.80, 0.55)


def people(*entries):
    return {p.track_id: p for p in entries}


def test_a_named_track_must_be_in_view():
    here = people(Seen(1, LEFT, False, NOW - 1), Seen(2, RIGHT, True, NOW - 0.2))
    assert choose_addressee(1, here, NOW, 5.0) == A.Addressee(1, A.REQUESTED, "", (1, 2))
    unknown = choose_addressee(9999, here, NOW, 5.0)
    assert (unknown.track_id, unknown.how) == (0, A.NONE)
    assert unknown.error == "unknown track 9999: tracked are 1, 2"
    # A profile older than visible_s is someone who left: no longer tracked.
    gone = choose_addressee(1, people(Seen(1, LEFT, False, NOW - 6)), NOW, 5.0)
    assert gone.error == "unknown track 1: tracked are none"


def test_without_a_track_the_engaged_then_the_only_then_the_most_engaged_person():
    engaged = people(Seen(1, LEFT, False, NOW), Seen(2, RIGHT, True, NOW))
    assert choose_addressee(0, engaged, NOW, 5.0).track_id == 2
    assert choose_addressee(0, engaged, NOW, 5.0).how == A.ENGAGED
    only = people(Seen(4, LEFT, False, NOW), Seen(5, RIGHT, True, NOW - 10))  # 5 has left
    assert choose_addressee(0, only, NOW, 5.0) == A.Addressee(4, A.ONLY_PERSON, "", (4,))
    # Two in view, nobody engaged: the most engaged one, if their score reaches the floor.
    two = people(
        Seen(1, LEFT, False, NOW, 0.49, "kqzxt"),
        Seen(2, RIGHT, False, NOW, 0.2, "anonymous_person_f2"),
    )
    most = choose_addressee(0, two, NOW, 5.0, floor=0.3)
    assert most == A.Addressee(1, A.MOST_ENGAGED, "", (1, 2), "kqzxt")
    assert choose_addressee(0, two, NOW, 5.0, floor=0.5) == A.Addressee(0, A.NONE, "", (1, 2))
    tie = people(Seen(2, RIGHT, False, NOW), Seen(1, LEFT, False, NOW))
    assert choose_addressee(0, tie, NOW, 5.0).track_id == 1  # a tie: the lowest track
    assert choose_addressee(0, {}, NOW, 5.0) == A.Addressee(0, A.NONE, "", ())
    # Two engaged only while one profile is older than the switch: the newer one wins.
    both = people(Seen(1, LEFT, True, NOW - 0.4), Seen(2, RIGHT, True, NOW - 0.1))
    assert choose_addressee(0, both, NOW, 5.0).track_id == 2


def test_a_question_may_name_a_person_whose_visible_track_is_used():
    here = people(
        Seen(1, LEFT, False, NOW, 0.1, "kqzxt"),
        Seen(2, RIGHT, True, NOW, 0.9, "anonymous_person_f2"),
        Seen(3, RIGHT, False, NOW - 9, 0.0, "abcde"),  # left the picture
    )
    named = choose_addressee(0, here, NOW, 5.0, "kqzxt")
    assert named == A.Addressee(1, A.REQUESTED, "", (1, 2), "kqzxt")
    assert choose_addressee(1, here, NOW, 5.0, "kqzxt") == named  # both, agreeing
    gone = choose_addressee(0, here, NOW, 5.0, "abcde")
    assert (gone.track_id, gone.how, gone.person_id) == (0, A.NONE, "")
    assert gone.error == "person abcde is not in view: in view are anonymous_person_f2, kqzxt"
    assert choose_addressee(0, {}, NOW, 5.0, "abcde").error == (
        "person abcde is not in view: in view are none"
    )
    disagree = choose_addressee(2, here, NOW, 5.0, "kqzxt")
    assert disagree.track_id == 0
    assert disagree.error == "track 2 is not person kqzxt: that person is track 1"
    # By track: the person comes with it.
    assert choose_addressee(2, here, NOW, 5.0).person_id == "anonymous_person_f2"


def test_head_and_shoulders_box_uses_the_documented_factors_and_is_clamped():
    # A 64x64 px face at (288, 96) in a 640x480 frame.
    face = (288 / 640, 96 / 480, 352 / 640, 160 / 480)
    x0, y0, x1, y1 = head_and_shoulders(face, 640, 480)
    assert (x1 - x0) * 640 == pytest.approx(A.FACE_WIDTHS * 64)
    assert y0 * 480 == pytest.approx(96 - A.ABOVE_FACE * 64)
    assert y1 * 480 == pytest.approx(160 + A.BELOW_FACE * 64)
    assert (x0 + x1) / 2 == pytest.approx(0.5)
    # At the frame's corner: clamped, never outside 0..1.
    corner = head_and_shoulders((0.0, 0.0, 0.2, 0.4), 640, 480)
    assert corner[0] == 0.0 and corner[1] == 0.0 and corner[2] < 1.0 and corner[3] == 1.0
    low = head_and_shoulders((0.85, 0.7, 1.0, 0.95), 640, 480)
    assert low[2] == 1.0 and low[3] == 1.0


def test_image_roi_crops_only_with_two_people_in_asker_mode():
    two = people(Seen(1, LEFT, False, NOW), Seen(2, RIGHT, True, NOW))
    asker = choose_addressee(0, two, NOW, 5.0)
    roi = image_roi(asker, two, "asker", 640, 480)
    assert roi == head_and_shoulders(RIGHT, 640, 480) and roi != A.WHOLE_FRAME
    assert image_roi(asker, two, "frame", 640, 480) == A.WHOLE_FRAME
    one = people(Seen(1, LEFT, False, NOW))
    assert image_roi(choose_addressee(0, one, NOW, 5.0), one, "asker", 640, 480) == (0, 0, 1, 1)
    nobody = people(Seen(1, LEFT, False, NOW), Seen(2, RIGHT, False, NOW))
    whom = choose_addressee(0, nobody, NOW, 5.0, floor=0.1)
    assert image_roi(whom, nobody, "asker", 640, 480) == A.WHOLE_FRAME
    most = choose_addressee(0, nobody, NOW, 5.0)  # floor 0: the most engaged, cropped
    assert image_roi(most, nobody, "asker", 640, 480) == head_and_shoulders(LEFT, 640, 480)


def test_crop_of_a_photo_frame_shows_the_asker_and_not_the_other():
    from uservlm_ros.backends.face_detector import DETECTORS, DetectorOptions

    detector = DETECTORS.create("blazeface_full", DetectorOptions())
    frame = frame_with_people([(0, 200, 330, 140), (1, 240, 60, 120)])  # astronaut right
    height, width = frame.shape[:2]
    faces = sorted(detector.detect(frame), key=lambda d: d.box.xmin)
    assert len(faces) == 2
    seen = {}
    for track_id, face in enumerate(faces, start=1):
        box = face.box
        roi = (box.xmin / width, box.ymin / height, box.xmax / width, box.ymax / height)
        seen[track_id] = Seen(track_id, roi, False, NOW)
    for asker, other in ((1, 2), (2, 1)):
        whom = choose_addressee(asker, seen, NOW, 5.0)
        roi = image_roi(whom, seen, "asker", width, height)
        crop = A.crop(frame, roi)
        found = detector.detect(np.ascontiguousarray(crop))
        assert len(found) == 1  # the asker, whole, and nobody else
        # The face found in the crop is the asker's: same place in frame pixels.
        box = found[0].box
        centre = (roi[0] * width + box.centre[0], roi[1] * height + box.centre[1])
        asker_box, other_box = faces[asker - 1].box, faces[other - 1].box
        assert asker_box.xmin <= centre[0] <= asker_box.xmax
        assert not other_box.xmin <= centre[0] <= other_box.xmax


def test_crop_keeps_at_least_a_pixel():
    image = np.zeros((10, 20, 3), np.uint8)
    assert A.crop(image, (0.0, 0.0, 0.0, 0.0)).shape == (1, 1, 3)
    assert A.crop(image, (1.0, 1.0, 1.0, 1.0)).shape == (1, 1, 3)
    assert A.crop(image, (0.0, 0.0, 1.0, 1.0)).shape == (10, 20, 3)


# -- vlm_responder_node: the addressee, the asker's image_roi and errors over DDS


PERSONS = {1: "kqzxt", 2: "anonymous_person_f2"}


def _responder(processes, *params):
    args = ["-m", "uservlm_ros.nodes.vlm_responder_node", "--ros-args"]
    for remap in (
        "/uservlm/question:=/ad/question",
        "/uservlm/response:=/ad/response",
        "/uservlm/respond:=/ad/respond",
        "/uservlm/user_profile:=/ad/user_profile",
        "/camera/image_raw:=/ad/image",
    ):
        args += ["-r", remap]
    for param in ("responder.backend:=fallback", *params):
        args += ["-p", param]
    node = processes.start_python("responder", *args)
    node.wait_for_output("vlm_responder_node active", timeout=60)
    return node


def _profile(track_id, roi, engaged, stamp, engagement=0.0):
    from std_msgs.msg import Header
    from uservlm.msg import UserProfile

    from uservlm_ros.ros.conversions import seconds_to_stamp

    return UserProfile(
        header=Header(stamp=seconds_to_stamp(stamp), frame_id="camera"),
        track_id=track_id,
        person_id=PERSONS[track_id],
        roi=list(roi),
        engaged=engaged,
        engagement=engagement,
        engagement_state=UserProfile.ENGAGEMENT_ENGAGED if engaged else 1,
        observations=5,
        profile_text=f"Person {track_id}.",
    )


def _inside(inner, outer) -> bool:
    return (
        outer[0] <= inner[0]
        and outer[1] <= inner[1]
        and inner[2] <= outer[2]
        and inner[3] <= outer[3]
    )


@pytest.mark.graph
def test_responder_addresses_the_asker_and_shows_the_model_their_region(ros, processes):
    import time

    from sensor_msgs.msg import Image
    from std_msgs.msg import Header
    from uservlm.msg import Response, UserProfile

    from uservlm_ros.ros.conversions import rgb_to_image, seconds_to_stamp
    from uservlm_ros.ros.qos import LATCHED_QOS, SENSOR_QOS
    from uservlm_ros.ros.respond_client import RespondClient

    _responder(processes, "responder.visible_s:=3.0")
    profiles = ros.publisher(UserProfile, "/ad/user_profile", LATCHED_QOS)
    images = ros.publisher(Image, "/ad/image", SENSOR_QOS)
    client = RespondClient(ros.node, "/ad/respond")
    assert client.wait_for_server(30)
    frame = frame_with_people([(0, 200, 330, 140), (1, 240, 60, 120)])

    def show(*people):
        """A fresh camera frame and the profiles of `people` (track, roi, engaged[, score]) as
        of now."""
        now = time.time()
        for track_id, roi, engaged, *score in people:
            profiles.publish(_profile(track_id, roi, engaged, now, *score))
        for _ in range(5):  # best effort, like a camera: one of them arrives
            images.publish(rgb_to_image(frame, Header(stamp=seconds_to_stamp(now))))
            time.sleep(0.1)

    def ask(track_id=0, question="What do you think of my shirt?", mode="", person_id=""):
        call = client.ask(
            question, track_id=track_id, person_id=person_id, mode=mode, source="test"
        )
        response = call.result(30)
        assert response.final
        return response

    show((1, LEFT, False), (2, RIGHT, True))
    engaged = ask()
    assert (engaged.error, engaged.track_id, engaged.person_id, engaged.addressee) == (
        "",
        2,
        PERSONS[2],
        Response.ADDRESSEE_ENGAGED,
    )
    assert _inside(RIGHT, engaged.image_roi) and not _inside(LEFT, engaged.image_roi)
    assert engaged.image_roi.tolist() == pytest.approx(head_and_shoulders(RIGHT, 640, 480))

    named = ask(track_id=1)
    assert (named.track_id, named.addressee) == (1, Response.ADDRESSEE_REQUESTED)
    assert named.person_id == PERSONS[1]
    show((1, LEFT, False), (2, RIGHT, True))  # fresh: each answer takes a while on 2 cores
    by_person = ask(person_id=PERSONS[1])
    assert (by_person.error, by_person.track_id, by_person.person_id) == ("", 1, PERSONS[1])
    assert by_person.image_roi.tolist() == named.image_roi.tolist()
    absent = ask(person_id="zzzzz")
    assert absent.error == f"person zzzzz is not in view: in view are {PERSONS[2]}, {PERSONS[1]}"
    assert (absent.track_id, absent.person_id) == (0, "zzzzz")  # what the question named
    disagree = ask(track_id=2, person_id=PERSONS[1])
    assert disagree.error == f"track 2 is not person {PERSONS[1]}: that person is track 1"
    assert _inside(LEFT, named.image_roi) and not _inside(RIGHT, named.image_roi)

    # profile_prompt: the asker's profile text, the whole frame (the papers' baseline).
    prompted = ask(track_id=1, mode="profile_prompt")
    assert prompted.track_id == 1 and prompted.image_roi.tolist() == [0, 0, 1, 1]

    show((1, LEFT, False), (2, RIGHT, True))
    unknown = ask(track_id=9999)
    assert unknown.error == "unknown track 9999: tracked are 1, 2" and unknown.text == ""
    assert unknown.addressee == Response.ADDRESSEE_NONE

    # Nobody engaged, two in view: the most engaged one (the reported case: 0.49 < 0.5 to
    # engage, and the question was answered for nobody).
    show((1, LEFT, False, 0.49), (2, RIGHT, False, 0.2))
    most = ask()
    assert (most.error, most.track_id, most.person_id, most.addressee) == (
        "",
        1,
        PERSONS[1],
        A.MOST_ENGAGED,
    )
    assert most.image_roi.tolist() == pytest.approx(head_and_shoulders(LEFT, 640, 480))
    # Both under responder.addressee_floor (0.1: turned away): answered for nobody, and the
    # Response says so.
    show((1, LEFT, False, 0.05), (2, RIGHT, False, 0.0))
    nobody = ask()
    assert (nobody.error, nobody.track_id, nobody.addressee) == ("", 0, Response.ADDRESSEE_NONE)
    assert nobody.person_id == "" and nobody.image_roi.tolist() == [0, 0, 1, 1] and nobody.text

    # Person 2 has left (no profile for longer than responder.visible_s): 1 is the only one.
    time.sleep(3.2)
    show((1, LEFT, False))
    only = ask()
    assert (only.track_id, only.addressee) == (1, Response.ADDRESSEE_ONLY_PERSON)
    assert only.person_id == PERSONS[1]
    assert only.image_roi.tolist() == [0, 0, 1, 1]  # one person: the whole frame
    assert ask(track_id=2).error == "unknown track 2: tracked are 1"


@pytest.mark.graph
def test_frame_mode_always_shows_the_whole_frame(ros, processes):
    import time

    from sensor_msgs.msg import Image
    from std_msgs.msg import Header
    from uservlm.msg import UserProfile

    from uservlm_ros.ros.conversions import rgb_to_image, seconds_to_stamp
    from uservlm_ros.ros.qos import LATCHED_QOS, SENSOR_QOS
    from uservlm_ros.ros.respond_client import RespondClient

    _responder(processes, "responder.image:=frame")
    profiles = ros.publisher(UserProfile, "/ad/user_profile", LATCHED_QOS)
    images = ros.publisher(Image, "/ad/image", SENSOR_QOS)
    client = RespondClient(ros.node, "/ad/respond")
    assert client.wait_for_server(30)
    now = time.time()
    profiles.publish(_profile(1, LEFT, False, now))
    profiles.publish(_profile(2, RIGHT, True, now))
    frame = frame_with_people([(0, 200, 330, 140), (1, 240, 60, 120)])
    for _ in range(5):  # best effort, like a camera: one of them arrives
        images.publish(rgb_to_image(frame, Header(stamp=seconds_to_stamp(now))))
        time.sleep(0.1)
    response = client.ask("Hello?", track_id=1).result(30)
    assert response.error == "" and response.track_id == 1
    assert response.image_roi.tolist() == [0, 0, 1, 1]
