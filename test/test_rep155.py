"""REP-155 (ROS4HRI) output: a consumer written from REP-155's topic layout, subscribing the way
libhri does (reliable; transient-local for the latched per-person topics; per-id topics found
from faces/tracked and persons/tracked), reads what a HumansPublisher publishes. Also: ids,
mappings, bounded publishers, namespaces, hri_msgs missing, type hashes, the speech voice."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from harness import RosTestNode, wait_until, within
from hri_msgs.msg import (
    EngagementLevel,
    Expression,
    IdsList,
    IdsMatch,
    LiveSpeech,
    NormalizedRegionOfInterest2D,
    SoftBiometrics,
)
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Bool, Header, String
from uservlm.msg import AttributeEstimate, UserProfile

from uservlm_ros.core import humans, persons
from uservlm_ros.ros import rep155
from uservlm_ros.ros.conversions import rgb_to_image

RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
LATCHED = QoSProfile(
    depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
)
FIXED_PUBLISHERS = 4  # faces/tracked, persons/tracked, persons/known, candidate_matches
PER_FACE, PER_PERSON = 5, 3


class Consumer:
    """What a REP-155 reader knows: the tracked ids and each id's latest per-topic message."""

    FACE_TOPICS: ClassVar = {
        "roi": (NormalizedRegionOfInterest2D, RELIABLE),
        "cropped": (Image, RELIABLE),
        "softbiometrics": (SoftBiometrics, RELIABLE),
        "expression": (Expression, RELIABLE),
    }
    PERSON_TOPICS: ClassVar = {
        "face_id": (String, LATCHED),
        "anonymous": (Bool, LATCHED),
        "engagement_status": (EngagementLevel, RELIABLE),
    }

    def __init__(self, name: str, root: str = "/humans") -> None:
        self.ros = RosTestNode(name)
        self.root = root
        self.lock = threading.Lock()
        self.tracked: dict[str, list[str]] = {}
        self.latest: dict[tuple[str, str], object] = {}
        self.matches: list[IdsMatch] = []
        self._subscriptions: dict[tuple[str, str], list] = {}
        node = self.ros.node
        # A face's topics exist while it is tracked; a person's while it is known (in view or
        # not): the per-id subscriptions follow those two lists.
        for kind, path, topics in (
            ("faces", "faces/tracked", self.FACE_TOPICS),
            ("known", "persons/known", self.PERSON_TOPICS),
        ):
            node.create_subscription(
                IdsList,
                f"{root}/{path}",
                lambda msg, kind=kind, topics=topics: self._follow(kind, topics, msg),
                RELIABLE,
            )
        node.create_subscription(
            IdsList, f"{root}/persons/tracked", lambda m: self._store("persons", m.ids), RELIABLE
        )
        node.create_subscription(
            IdsMatch, f"{root}/candidate_matches", self._on_match, QoSProfile(depth=100)
        )

    def _store(self, kind: str, ids) -> None:
        with self.lock:
            self.tracked[kind] = list(ids)

    def _on_match(self, msg: IdsMatch) -> None:
        with self.lock:
            self.matches.append(msg)

    def _follow(self, kind: str, topics: dict, msg: IdsList) -> None:
        """New ids: subscribe to their topics; ids gone: unsubscribe (as libhri does)."""
        self._store(kind, msg.ids)
        node = self.ros.node
        mine = {key[1] for key in self._subscriptions if key[0] == kind}
        for gone in mine - set(msg.ids):
            for subscription in self._subscriptions.pop((kind, gone)):
                node.destroy_subscription(subscription)
        for new in [i for i in msg.ids if i not in mine]:
            self._subscriptions[(kind, new)] = [
                node.create_subscription(
                    msg_type,
                    f"{self.root}/{'faces' if kind == 'faces' else 'persons'}/{new}/{leaf}",
                    lambda m, key=(new, leaf): self._keep(key, m),
                    qos,
                )
                for leaf, (msg_type, qos) in topics.items()
            ]

    def _keep(self, key: tuple[str, str], msg) -> None:
        with self.lock:
            self.latest[key] = msg

    def get(self, ident: str, leaf: str):
        with self.lock:
            return self.latest.get((ident, leaf))

    def ids(self, kind: str) -> list[str] | None:
        with self.lock:
            return self.tracked.get(kind)

    def close(self) -> None:
        self.ros.close()


def drive(action, predicate, what: str, timeout: float = 15.0) -> None:
    """Repeat `action` (a publisher's call per frame) until `predicate` holds."""

    def step() -> bool:
        action()
        time.sleep(0.05)
        return predicate()

    wait_until(step, timeout, what)


def attribute(name: str, label: str, confidence: float, known: bool = True) -> AttributeEstimate:
    return AttributeEstimate(
        name=name,
        label=label if known else AttributeEstimate.UNKNOWN,
        known=known,
        confidence=confidence,
    )


def profile(age: float, gender: str, emotion: str, emotion_known: bool = True) -> UserProfile:
    return UserProfile(
        header=Header(frame_id="camera"),
        age_years=age,
        age_group=attribute("age_group", "30-39", 0.7),
        gender=attribute("gender", gender, 0.9),
        emotion=attribute("emotion", emotion, 0.6, emotion_known),
    )


@pytest.fixture
def consumer(rclpy_session, request):
    reader = Consumer(f"consumer_{request.node.name}"[:50])
    yield reader
    reader.close()


def crop() -> Image:
    return rgb_to_image(np.full((80, 64, 3), 200, np.uint8), Header(frame_id="camera"))


def test_faces_profiles_persons_come_and_go(ros, consumer):
    humans_out = rep155.HumansPublisher(ros.node)
    faces = [
        rep155.FaceView("f1", (0.1, 0.2, 0.3, 0.5), crop(), 0.9),
        rep155.FaceView("f2", (0.6, 0.1, 0.8, 0.4)),
    ]
    frame = Header(frame_id="camera")
    drive(
        lambda: humans_out.publish_frame(frame, faces),
        lambda: consumer.get("f1", "roi") is not None and consumer.get("f2", "roi") is not None,
        "both faces' roi",
    )
    assert consumer.ids("faces") == ["f1", "f2"]
    roi = consumer.get("f1", "roi")
    assert (roi.xmin, roi.ymax) == pytest.approx((0.1, 0.5)) and roi.c == pytest.approx(0.9)
    drive(
        lambda: humans_out.publish_frame(frame, faces),
        lambda: consumer.get("f1", "cropped") is not None,
        "f1's cropped image",
    )
    image = consumer.get("f1", "cropped")
    assert (image.width, image.height, image.encoding) == (128, 128, "rgb8")

    # Profiles: softbiometrics and expression (latched, so one publication reaches the reader).
    assert humans_out.publish_profile("f1", profile(34.6, "Female", "fear"))
    assert humans_out.publish_profile("f2", profile(float("nan"), "Male", "", False))
    assert not humans_out.publish_profile("f9", profile(20.0, "Male", "happy"))  # not in view
    wait_until(lambda: consumer.get("f2", "softbiometrics") is not None, 10, "f2 biometrics")
    wait_until(lambda: consumer.get("f1", "expression") is not None, 10, "f1 expression")
    bio = consumer.get("f1", "softbiometrics")
    assert (bio.age, bio.gender) == (35, SoftBiometrics.FEMALE)
    assert (bio.age_confidence, bio.gender_confidence) == pytest.approx((0.7, 0.9))
    assert consumer.get("f1", "expression").expression == Expression.SCARED
    bio2 = consumer.get("f2", "softbiometrics")
    assert (bio2.age, bio2.age_confidence, bio2.gender) == (0, 0.0, SoftBiometrics.MALE)
    assert consumer.get("f2", "expression") is None  # unknown emotion: nothing published

    # Persons: an identified one engaged on f1, an anonymous one on f2.
    persons = [
        rep155.PersonView("kqzxt", "f1", False, EngagementLevel.ENGAGED, 0.8),
        rep155.PersonView("anonymous_person_f2", "f2", True, EngagementLevel.DISENGAGED, 1.0),
    ]
    drive(
        lambda: humans_out.publish_persons(frame, persons, ["kqzxt", "mwxyz"]),
        lambda: (
            consumer.get("kqzxt", "engagement_status") is not None
            and consumer.get("anonymous_person_f2", "anonymous") is not None
        ),
        "the persons' topics",
    )
    assert consumer.ids("persons") == ["kqzxt", "anonymous_person_f2"]
    assert consumer.ids("known") == ["kqzxt", "mwxyz", "anonymous_person_f2"]
    assert consumer.get("kqzxt", "face_id").data == "f1"
    assert consumer.get("kqzxt", "anonymous").data is False
    assert consumer.get("anonymous_person_f2", "anonymous").data is True
    assert consumer.get("kqzxt", "engagement_status").level == EngagementLevel.ENGAGED
    with consumer.lock:
        pairs = {(m.id1, m.id2, round(m.confidence, 3)) for m in consumer.matches}
    assert ("f1", "kqzxt", 0.8) in pairs
    assert all(m.id2 != "anonymous_person_f2" for m in consumer.matches)  # identified only
    count = FIXED_PUBLISHERS + 2 * PER_FACE + 3 * PER_PERSON
    assert humans_out.publisher_count == count

    # Everyone leaves: empty lists, the known person stays without a face, the rest is gone.
    drive(
        lambda: (
            humans_out.publish_frame(frame, []),
            humans_out.publish_persons(frame, [], ["kqzxt"]),
        ),
        lambda: consumer.ids("faces") == [] and consumer.ids("persons") == [],
        "empty tracked lists",
    )
    assert humans_out.publisher_count == FIXED_PUBLISHERS + PER_PERSON
    wait_until(lambda: consumer.get("kqzxt", "face_id").data == "", 10, "kqzxt without a face")
    wait_until(
        lambda: (
            ros.node.count_publishers("/humans/faces/f1/roi") == 0
            and ros.node.count_publishers("/humans/persons/anonymous_person_f2/anonymous") == 0
        ),
        10,
        "the gone ids' publishers destroyed",
    )
    with consumer.lock:
        assert any(
            (m.id1, m.id2, m.confidence) == ("f1", "kqzxt", 0.0) for m in consumer.matches
        ), "no 'not associated any more' match for f1 <-> kqzxt"
    humans_out.close()
    humans_out.close()  # idempotent


def test_crops_are_converted_only_for_a_reader(ros, monkeypatch):
    calls = []
    convert = rep155.image_to_rgb
    monkeypatch.setattr(rep155, "image_to_rgb", lambda image: calls.append(1) or convert(image))
    humans_out = rep155.HumansPublisher(ros.node, prefix="quiet_humans")
    for _ in range(20):
        humans_out.publish_frame(Header(), [rep155.FaceView("f1", (0, 0, 1, 1), crop())])
    assert calls == []
    humans_out.close()


def test_thousand_faces_keep_publishers_bounded(ros):
    humans_out = rep155.HumansPublisher(ros.node, prefix="churn")
    before = len(list(ros.node.publishers))
    most = 0
    for track in range(1, 1001):
        face = persons.face_id(track)
        humans_out.publish_frame(Header(), [rep155.FaceView(face, (0.1, 0.1, 0.2, 0.2))])
        humans_out.publish_persons(
            Header(), [rep155.PersonView(persons.anonymous_id(track), face, True, 0, 1.0)], []
        )
        most = max(most, humans_out.publisher_count)
    assert most == FIXED_PUBLISHERS + PER_FACE + PER_PERSON
    humans_out.publish_frame(Header(), [])
    humans_out.publish_persons(Header(), [], [])
    assert humans_out.publisher_count == FIXED_PUBLISHERS
    assert len(list(ros.node.publishers)) == before
    humans_out.close()
    assert len(list(ros.node.publishers)) == before - FIXED_PUBLISHERS


def test_a_namespace_moves_every_topic(rclpy_session):
    import rclpy

    node = rclpy.create_node("rep155_ns", namespace="robot1")
    try:
        humans_out = rep155.HumansPublisher(node)
        humans_out.publish_frame(Header(), [rep155.FaceView("f4", (0, 0, 1, 1))])
        humans_out.publish_persons(Header(), [rep155.PersonView("abcde", "f4", False, 3, 1)], [])
        names = {publisher.topic_name for publisher in node.publishers}
        assert "/robot1/humans/faces/tracked" in names
        assert "/robot1/humans/faces/f4/roi" in names
        assert "/robot1/humans/persons/abcde/face_id" in names
        assert "/robot1/humans/candidate_matches" in names
        assert not [n for n in names if n.startswith("/humans")]
        humans_out.close()
    finally:
        node.destroy_node()


def test_ids_that_are_not_name_tokens_are_refused(ros):
    humans_out = rep155.HumansPublisher(ros.node, prefix="refused")
    for bad in ("", "3f", "f-1", "a/b", "a__b", "f 1", None, 7):
        assert not humans.valid_id(bad)
        with pytest.raises(ValueError) as error:
            humans_out.publish_frame(Header(), [rep155.FaceView(bad, (0, 0, 1, 1))])
        assert "\n" not in str(error.value)
        with pytest.raises(ValueError):
            humans_out.publish_persons(Header(), [rep155.PersonView(bad, "", True, 0, 1.0)], [])
    with pytest.raises(ValueError):  # engagement level out of 0..4
        humans_out.publish_persons(Header(), [rep155.PersonView("abcde", "f1", True, 5, 1)], [])
    assert humans_out.publisher_count == FIXED_PUBLISHERS
    humans_out.close()


def test_mappings():
    assert [humans.expression_name(e, True) for e in ("angry", "disgust", "fear", "surprise")] == [
        "angry",
        "disgusted",
        "scared",
        "surprised",
    ]
    assert set(humans.EXPRESSIONS.values()) <= {
        v for k, v in vars(Expression).items() if k.isupper() and isinstance(v, str)
    }
    assert humans.expression_name("happy", False) is None
    assert humans.gender_code("Male", True) == SoftBiometrics.MALE
    assert humans.gender_code("Female", True) == SoftBiometrics.FEMALE
    assert humans.gender_code("Female", False) == SoftBiometrics.UNDEFINED
    assert humans.age_years(float("nan")) is None and humans.age_years(300.0) == 255
    assert humans.unit(float("nan")) == 0.0 and humans.unit(1.5) == 1.0


def test_without_hri_msgs_nothing_is_available(monkeypatch):
    assert rep155.hri_msgs_available()
    monkeypatch.setitem(sys.modules, "hri_msgs", None)
    monkeypatch.setitem(sys.modules, "hri_msgs.msg", None)
    assert not rep155.hri_msgs_available()


class _Node:
    """What rep155_output reads of a node: its parameters and its logger."""

    def __init__(self, enabled: bool) -> None:
        self.params = {"rep155.enabled": enabled}
        self.warnings: list[str] = []

    def get_logger(self):
        return self

    def warning(self, text: str) -> None:
        self.warnings.append(text)


def test_the_output_is_made_only_when_enabled_and_hri_msgs_is_there(monkeypatch):
    def made(node, **options):
        return ("made", options)

    off, on = _Node(False), _Node(True)
    assert rep155.rep155_output(off, made, "x/ topics", size=1) is None
    assert rep155.rep155_output(on, made, "x/ topics", size=1) == ("made", {"size": 1})
    assert off.warnings == on.warnings == []
    monkeypatch.setattr(rep155, "hri_msgs_available", lambda: False)
    assert rep155.rep155_output(on, made, "x/ topics") is None
    assert on.warnings == ["rep155.enabled but the hri_msgs package is not installed: no x/ topics"]


# Field lists of hri_msgs 2.3.2 (docs.ros.org) and the RIHS01 hashes our build gives them: a
# change here changes the type on the wire and no upstream hri_msgs reader would match.
UPSTREAM_FIELDS = {
    IdsList: ["header", "ids"],
    NormalizedRegionOfInterest2D: ["header", "xmin", "ymin", "xmax", "ymax", "c"],
    SoftBiometrics: ["header", "age", "age_confidence", "gender", "gender_confidence"],
    Expression: ["header", "expression", "valence", "arousal", "confidence"],
    EngagementLevel: ["header", "level"],
    LiveSpeech: ["header", "incremental", "final", "confidence", "locale"],
    IdsMatch: ["id1", "id1_type", "id2", "id2_type", "confidence"],
}
TYPE_HASHES = {
    "EngagementLevel": "RIHS01_275391f46d2e6cc0d21085f8e02dce6a8150baa57539ec99bd9f4e0321443788",
    "Expression": "RIHS01_411b88e0604397d44775d8ec6a4bc69398fb0dfbfe864c33a40fa99ee85f1b00",
    "IdsList": "RIHS01_7e0812d1ac945c98fd3e393568d581ad0ab567f37b24eff633eab778c1bfe62d",
    "IdsMatch": "RIHS01_1c649d4a87ca2d4fe5f606395e83a863640e411c9192dfda6d399a68019966f0",
    "LiveSpeech": "RIHS01_2cfdf359eed836b1d32ac2d62e1476f2048212e7ed79a17c0a594b04c33f8783",
    "NormalizedRegionOfInterest2D": (
        "RIHS01_2e50c93f1ca166ee77af9a5424dc951ae4e452b740162a7f83c082d917dcaff5"
    ),
    "SoftBiometrics": "RIHS01_b71b1b988b22c4a7f4f04b5395ae89a3168dff71ddd44bbf29ea84d4645fd69e",
}


def test_hri_msgs_fields_and_type_hashes_are_stable():
    for msg_type, fields in UPSTREAM_FIELDS.items():
        assert list(msg_type.get_fields_and_field_types()) == fields, msg_type.__name__
    share = Path(sys.prefix, "share", "hri_msgs", "msg")  # where `make setup` installs it
    hashes = {}
    for name in TYPE_HASHES:
        description = json.loads((share / f"{name}.json").read_text())
        hashes[name] = next(
            h["hash_string"]
            for h in description["type_hashes"]
            if h["type_name"] == f"hri_msgs/msg/{name}"
        )
        print(f"hri_msgs/msg/{name}: {hashes[name]}")
    assert hashes == TYPE_HASHES


def test_voice_lists_itself_and_publishes_final_speech(ros):
    voice = rep155.VoicePublisher(ros.node)
    tracked = ros.subscribe(IdsList, "/humans/voices/tracked", LATCHED)
    speech = ros.subscribe(LiveSpeech, f"/humans/voices/{humans.ROBOT_VOICE_ID}/speech", RELIABLE)
    assert tracked.wait_for(1)[-1].ids == [humans.ROBOT_VOICE_ID]
    stamp = Header(frame_id="naoqi")
    drive(
        lambda: voice.publish_final(stamp, "what is your name", 0.87, "en"),
        lambda: bool(speech.messages),
        "a LiveSpeech message",
    )
    said = speech.messages[0]
    assert (said.final, said.incremental, said.locale) == ("what is your name", "", "en")
    assert said.confidence == pytest.approx(0.87)
    voice.destroy()
    assert within(10, lambda: tracked.messages[-1].ids == []), "voice not removed"
