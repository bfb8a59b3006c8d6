"""REP-155 (ROS4HRI) output: the humans/ topics that libhri / pyhri, hri_rviz and dialogue
managers read to know who is around the robot (docs/ros_api.md, "REP-155 (ROS4HRI) output").

`HumansPublisher` turns what user_profiler_node knows (faces in view, their profiles, persons)
into faces/ and persons/ topics; `VoicePublisher` turns speech_node's questions into the
robot microphone's voice topics. Topic names are relative (`humans/...`), so a node namespace
moves them. Per-id topics exist while their id is listed: a face's publishers are destroyed in
the first frame without it, a person's when it is neither tracked nor known, so their number
stays bounded however many people come and go. Conventions and mappings: `core/humans.py`.
hri_msgs is imported only when a publisher is made: without it `hri_msgs_available()` is False
and the nodes publish none of this.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import cv2
from rclpy.event_handler import PublisherEventCallbacks
from rclpy.qos import QoSProfile
from sensor_msgs.msg import Image
from std_msgs.msg import Bool, Header, String

from uservlm_ros.core import humans
from uservlm_ros.core import persons as persons_model
from uservlm_ros.core.errors import ImageConversionError
from uservlm_ros.core.parameters import Param
from uservlm_ros.ros.conversions import image_to_rgb, rgb_to_image
from uservlm_ros.ros.qos import HRI_LATCHED_QOS, HRI_QUEUED_QOS, HRI_STREAM_QOS

# Per-id publishers come and go while executor threads spin; a publisher's QoS event handlers
# are waitables, and destroying one while a thread builds its wait set kills that thread.
# Without event handlers a publisher is nothing an executor waits on.
_NO_EVENTS = PublisherEventCallbacks(use_default_callbacks=False)


def _publisher(node, msg_type, topic: str, qos: QoSProfile):
    return node.create_publisher(msg_type, topic, qos, event_callbacks=_NO_EVENTS)


REP155_ENABLED = Param(
    "rep155.enabled",
    True,
    "Publish the REP-155 (ROS4HRI) humans/ topics (needs the hri_msgs package; without it "
    "the node says so once and publishes none)",
)
REP155_PARAMS: list[Param] = [
    REP155_ENABLED,
    Param(
        "rep155.crop_size",
        128,
        "Side of the square face images on humans/faces/<face_id>/cropped and aligned, pixels",
        min=32,
        max=512,
    ),
]


def hri_msgs_available() -> bool:
    """Whether the hri_msgs messages can be imported (a ROS distribution's or `make setup`'s)."""
    try:
        from hri_msgs import msg  # noqa: F401
    except ImportError:
        return False
    return True


Output = TypeVar("Output")


def rep155_output(
    node, publisher: Callable[..., Output], topics: str, **options: Any
) -> Output | None:
    """`publisher(node, **options)` (a REP-155 publisher class) when the node's `rep155.enabled`
    is true and hri_msgs is installed; else None, with a warning naming the `topics` missing."""
    if not node.params[REP155_ENABLED.name]:
        return None
    if not hri_msgs_available():
        node.get_logger().warning(
            f"{REP155_ENABLED.name} but the hri_msgs package is not installed: no {topics}"
        )
        return None
    return publisher(node, **options)


@dataclass(frozen=True)
class FaceView:
    """A face in the current frame."""

    face_id: str
    roi: tuple[float, float, float, float]  # normalised xmin, ymin, xmax, ymax
    crop: Image | None = None  # the aligned rgb8 face crop, any size; None = not available
    confidence: float = 1.0  # detector score, 0..1


@dataclass(frozen=True)
class PersonView:
    """A person in view now."""

    person_id: str
    face_id: str  # "" = no face of this person in view
    anonymous: bool
    engagement_level: int  # REP-155 EngagementLevel, 0 (unknown) .. 4 (disengaging)
    match_confidence: float  # how sure face_id is this person's face, 0..1


@dataclass
class _Entry:
    """One id's publishers, and for a person what its latched topics last said."""

    publishers: dict[str, Any]
    face_id: str | None = None  # None: nothing published yet
    anonymous: bool | None = None


@dataclass
class _Ids:
    """Per-id publishers of one kind: which leaves, their types and QoS."""

    leaves: tuple[tuple[str, Any, QoSProfile], ...]
    topic: Any  # (prefix, id, leaf) -> name
    by_id: dict[str, _Entry] = field(default_factory=dict)


def frame_views(
    faces: Sequence,
    tracked: Mapping[int, str],
    confidence: Mapping[int, float],
    levels: Mapping[int, int],
) -> tuple[list[FaceView], list[PersonView]]:
    """The REP-155 views of one frame's uservlm/Face messages: `tracked` maps a track to its
    person (a track not in it is its anonymous person, as the profiler will make it),
    `confidence` to the person match's confidence, `levels` to its engagement level."""
    views, persons = [], []
    for face in faces:
        face_id = persons_model.face_id(face.track_id)
        person_id = tracked.get(face.track_id, persons_model.anonymous_id(face.track_id))
        roi = (face.xmin, face.ymin, face.xmax, face.ymax)
        views.append(FaceView(face_id, roi, face.crop, face.confidence))
        persons.append(
            PersonView(
                person_id,
                face_id,
                persons_model.is_anonymous(person_id),
                levels.get(face.track_id, 0),
                confidence.get(face.track_id, 0.0),
            )
        )
    return views, persons


class HumansPublisher:
    """Publishes faces and persons on REP-155 topics; thread-safe, calls are cheap."""

    def __init__(self, node, prefix: str = "humans", crop_size: int = 128) -> None:
        from hri_msgs import msg as hri

        self._hri = hri
        self._node = node
        self._prefix = prefix.strip("/")
        self._crop_size = crop_size
        self._lock = threading.Lock()
        self._fixed = [
            _publisher(node, hri.IdsList, f"{self._prefix}/{name}", HRI_LATCHED_QOS)
            for name in ("faces/tracked", "persons/tracked", "persons/known")
        ]
        self._faces_tracked, self._persons_tracked, self._persons_known = self._fixed
        self._matches = _publisher(
            node, hri.IdsMatch, f"{self._prefix}/candidate_matches", HRI_QUEUED_QOS
        )
        self._fixed.append(self._matches)
        self._faces = _Ids(
            (
                ("roi", hri.NormalizedRegionOfInterest2D, HRI_STREAM_QOS),
                ("cropped", Image, HRI_STREAM_QOS),
                ("aligned", Image, HRI_STREAM_QOS),
                # Published per profile, not per frame: a consumer that subscribes when the
                # face appears in faces/tracked still gets the latest one.
                ("softbiometrics", hri.SoftBiometrics, HRI_LATCHED_QOS),
                ("expression", hri.Expression, HRI_LATCHED_QOS),
            ),
            humans.face_topic,
        )
        self._persons = _Ids(
            (
                ("face_id", String, HRI_LATCHED_QOS),
                ("anonymous", Bool, HRI_LATCHED_QOS),
                ("engagement_status", hri.EngagementLevel, HRI_STREAM_QOS),
            ),
            humans.person_topic,
        )

    @property
    def publisher_count(self) -> int:
        with self._lock:
            return len(self._fixed) + sum(
                len(ids.leaves) * len(ids.by_id) for ids in (self._faces, self._persons)
            )

    # ------------------------------------------------------------------ faces

    def publish_frame(self, header: Header, faces: Sequence[FaceView]) -> None:
        """Every processed frame: faces/tracked (empty when nobody), each face's roi, and its
        crop on cropped/aligned while they have subscribers. Faces not listed are dropped."""
        ids = [humans.check_id(face.face_id, "face") for face in faces]
        hri = self._hri
        with self._lock:
            current = {face_id: self._open(self._faces, face_id) for face_id in ids}
            self._faces_tracked.publish(hri.IdsList(header=header, ids=ids))
            self._close_missing(self._faces, current)
            for face in faces:
                publishers = current[face.face_id].publishers
                xmin, ymin, xmax, ymax = (humans.unit(v) for v in face.roi)
                publishers["roi"].publish(
                    hri.NormalizedRegionOfInterest2D(
                        header=header,
                        xmin=xmin,
                        ymin=ymin,
                        xmax=xmax,
                        ymax=ymax,
                        c=humans.unit(face.confidence),
                    )
                )
                self._publish_crop(publishers, face.crop, header)

    def _publish_crop(self, publishers: dict, crop: Image | None, header: Header) -> None:
        wanted = [
            publishers[leaf]
            for leaf in ("cropped", "aligned")
            if publishers[leaf].get_subscription_count() > 0
        ]
        if crop is None or not wanted:  # the conversion is the costly part: only for a reader
            return
        try:
            rgb = image_to_rgb(crop)
        except ImageConversionError:
            return  # a malformed crop: the roi went out, the image is skipped
        size = self._crop_size
        if rgb.shape[:2] != (size, size):
            rgb = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)
        image = rgb_to_image(rgb, header)
        for publisher in wanted:
            publisher.publish(image)

    def publish_profile(self, face_id: str, profile) -> bool:
        """A uservlm/UserProfile of a face in view -> its softbiometrics and expression. An
        unknown emotion publishes no expression (the last one stands); softbiometrics go out
        when age or gender is known. False (nothing published) for a face not in view."""
        humans.check_id(face_id, "face")
        hri = self._hri
        age = humans.age_years(profile.age_years)
        gender = humans.gender_code(profile.gender.label, profile.gender.known)
        expression = humans.expression_name(profile.emotion.label, profile.emotion.known)
        with self._lock:
            entry = self._faces.by_id.get(face_id)
            if entry is None:
                return False
            publishers = entry.publishers
            if age is not None or gender != humans.GENDER_UNDEFINED:
                publishers["softbiometrics"].publish(
                    hri.SoftBiometrics(
                        header=profile.header,
                        age=age or 0,
                        age_confidence=humans.unit(profile.age_group.confidence)
                        if age is not None and profile.age_group.known
                        else 0.0,
                        gender=gender,
                        gender_confidence=humans.unit(profile.gender.confidence)
                        if gender != humans.GENDER_UNDEFINED
                        else 0.0,
                    )
                )
            if expression is not None:
                publishers["expression"].publish(
                    hri.Expression(
                        header=profile.header,
                        expression=expression,
                        confidence=humans.unit(profile.emotion.confidence),
                    )
                )
        return True

    # ------------------------------------------------------------------ persons

    def publish_persons(
        self, header: Header, tracked: Sequence[PersonView], known: Sequence[str]
    ) -> None:
        """persons/tracked (those in view) and persons/known (known ones and those in view);
        per person face_id and anonymous (on change), engagement_status (in view), and a
        face <-> person candidate match for each identified person in view."""
        for person in tracked:
            humans.check_id(person.person_id, "person")
            if person.face_id:
                humans.check_id(person.face_id, "face")
            if person.engagement_level not in humans.ENGAGEMENT_LEVELS:
                raise ValueError(
                    f"engagement_level of {person.person_id} must be 0..4, "
                    f"got {person.engagement_level!r}"
                )
        tracked_ids = [person.person_id for person in tracked]
        known_ids = list(
            dict.fromkeys([*(humans.check_id(k, "person") for k in known), *tracked_ids])
        )
        hri = self._hri
        with self._lock:
            current = {pid: self._open(self._persons, pid) for pid in known_ids}
            self._persons_tracked.publish(hri.IdsList(header=header, ids=tracked_ids))
            self._persons_known.publish(hri.IdsList(header=header, ids=known_ids))
            for pid in set(self._persons.by_id) - set(current):
                self._set_face(pid, self._persons.by_id[pid], "")
            self._close_missing(self._persons, current)
            in_view = {person.person_id: person for person in tracked}
            for pid, topics in current.items():
                person = in_view.get(pid)
                self._set_face(pid, topics, person.face_id if person else "")
                anonymous = person.anonymous if person else False
                if topics.anonymous != anonymous:
                    topics.publishers["anonymous"].publish(Bool(data=anonymous))
                    topics.anonymous = anonymous
                if person is None:
                    continue
                topics.publishers["engagement_status"].publish(
                    hri.EngagementLevel(header=header, level=person.engagement_level)
                )
                if person.face_id and not person.anonymous:
                    self._match(person.face_id, pid, humans.unit(person.match_confidence))

    def _set_face(self, person_id: str, topics: _Entry, face_id: str) -> None:
        if topics.face_id == face_id:
            return
        # REP-155: confidence 0 says the old pair is no longer associated (only identified
        # persons had a match).
        if topics.face_id and topics.anonymous is False:
            self._match(topics.face_id, person_id, 0.0)
        topics.publishers["face_id"].publish(String(data=face_id))
        topics.face_id = face_id

    def _match(self, face_id: str, person_id: str, confidence: float) -> None:
        match = self._hri.IdsMatch
        self._matches.publish(
            match(
                id1=face_id,
                id1_type=match.FACE,
                id2=person_id,
                id2_type=match.PERSON,
                confidence=confidence,
            )
        )

    # ------------------------------------------------------------------ publishers per id

    def _open(self, ids: _Ids, key: str) -> _Entry:
        """The entry of `key`, its publishers made on first use."""
        entry = ids.by_id.get(key)
        if entry is None:
            entry = ids.by_id[key] = _Entry(
                {
                    leaf: _publisher(self._node, msg_type, ids.topic(self._prefix, key, leaf), qos)
                    for leaf, msg_type, qos in ids.leaves
                }
            )
        return entry

    def _close_missing(self, ids: _Ids, keep: dict) -> None:
        for key in [k for k in ids.by_id if k not in keep]:
            for publisher in ids.by_id.pop(key).publishers.values():
                self._node.destroy_publisher(publisher)

    def close(self) -> None:
        """Say nobody is here any more, then destroy every publisher (the node lives on)."""
        header = Header(stamp=self._node.get_clock().now().to_msg())
        with self._lock:
            if not self._fixed:  # closed already
                return
            for publisher in (self._faces_tracked, self._persons_tracked, self._persons_known):
                publisher.publish(self._hri.IdsList(header=header, ids=[]))
            self._close_missing(self._faces, {})
            self._close_missing(self._persons, {})
            for publisher in self._fixed:
                self._node.destroy_publisher(publisher)
            self._fixed = []


class VoicePublisher:
    """One REP-155 voice (speech_node: the robot's microphone): lists it on voices/tracked
    (latched) and publishes each final transcript on voices/<voice_id>/speech. `destroy()`
    makes it one of a lifecycle node's activation entities (`ModelNode._io`)."""

    def __init__(self, node, voice_id: str = humans.ROBOT_VOICE_ID, prefix: str = "humans") -> None:
        from hri_msgs import msg as hri

        self._hri = hri
        self._node = node
        prefix = prefix.strip("/")
        self.voice_id = humans.check_id(voice_id, "voice")
        self._tracked = _publisher(node, hri.IdsList, f"{prefix}/voices/tracked", HRI_LATCHED_QOS)
        self._speech = _publisher(
            node, hri.LiveSpeech, humans.voice_topic(prefix, voice_id, "speech"), HRI_QUEUED_QOS
        )
        self._tracked.publish(
            hri.IdsList(header=Header(stamp=node.get_clock().now().to_msg()), ids=[voice_id])
        )

    def publish_final(self, header: Header, text: str, confidence: float, locale: str) -> None:
        self._speech.publish(
            self._hri.LiveSpeech(
                header=header, final=text, confidence=humans.unit(confidence), locale=locale
            )
        )

    def destroy(self) -> None:
        header = Header(stamp=self._node.get_clock().now().to_msg())
        self._tracked.publish(self._hri.IdsList(header=header, ids=[]))  # the voice is gone
        for publisher in (self._tracked, self._speech):
            self._node.destroy_publisher(publisher)
