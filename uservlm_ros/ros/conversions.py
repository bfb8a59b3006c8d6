"""Conversions between uservlm's dataclasses (core/, backends/) and ROS messages."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point
from sensor_msgs.msg import Image, RegionOfInterest
from std_msgs.msg import Header
from uservlm.msg import AttributeEstimate, Face, FaceArray, StageTiming, UserProfile

from uservlm_ros.backends.face_pipeline import TrackedFace
from uservlm_ros.core import persons
from uservlm_ros.core.engagement import EngagementStatus, FaceObservation
from uservlm_ros.core.fusion import AttributeResult, FusedProfile
from uservlm_ros.core.image import RawImage, from_rgb, to_rgb
from uservlm_ros.core.overlay import Person, profile_lines


def image_to_rgb(msg: Image) -> np.ndarray:
    """sensor_msgs/Image -> (h, w, 3) uint8 RGB; raises ImageConversionError on bad input."""
    return to_rgb(
        RawImage(
            height=msg.height,
            width=msg.width,
            encoding=msg.encoding,
            step=msg.step,
            data=msg.data,
            is_bigendian=msg.is_bigendian,
        )
    )


def rgb_to_image(rgb: np.ndarray, header: Header) -> Image:
    """(h, w, 3) uint8 RGB -> sensor_msgs/Image (rgb8)."""
    raw = from_rgb(rgb)
    return Image(
        header=header,
        height=raw.height,
        width=raw.width,
        encoding=raw.encoding,
        is_bigendian=0,
        step=raw.step,
        data=raw.data,
    )


def stamp_to_seconds(stamp: Time) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def seconds_to_stamp(seconds: float) -> Time:
    sec = int(seconds)
    return Time(sec=sec, nanosec=round((seconds - sec) * 1e9) % 1_000_000_000)


def stage_timings(timings_ms: dict[str, float]) -> list[StageTiming]:
    return [StageTiming(stage=s, duration_ms=max(float(ms), 0.0)) for s, ms in timings_ms.items()]


def face_to_msg(face: TrackedFace, header: Header, width: int, height: int) -> Face:
    box = face.detection.box
    landmarks = [
        Point(x=float(x), y=float(y), z=0.0)
        if math.isfinite(x) and math.isfinite(y)
        else Point(x=math.nan, y=math.nan, z=0.0)
        for x, y in face.detection.landmarks
    ]
    xmin, ymin = math.floor(box.xmin), math.floor(box.ymin)
    return Face(
        track_id=face.track_id,
        xmin=float(box.xmin / width),
        ymin=float(box.ymin / height),
        xmax=float(box.xmax / width),
        ymax=float(box.ymax / height),
        roi=RegionOfInterest(
            x_offset=xmin,
            y_offset=ymin,
            width=min(math.ceil(box.xmax), width) - xmin,
            height=min(math.ceil(box.ymax), height) - ymin,
        ),
        confidence=float(face.detection.score),
        landmarks=landmarks,
        roll_deg=float(face.crop.roll_deg),
        crop=rgb_to_image(face.crop.image, header),
    )


def attribute_to_msg(result: AttributeResult) -> AttributeEstimate:
    return AttributeEstimate(
        name=result.name,
        label=result.label,
        known=result.known,
        abstain_reason=result.abstain_reason,
        confidence=float(result.confidence),
        label_names=list(result.label_names),
        probabilities=[float(p) for p in result.probabilities],
    )


def profile_to_msg(
    profile: FusedProfile,
    header: Header,
    model_id: str,
    timings: list[StageTiming],
    track_id: int,
    person: persons.Person,
) -> UserProfile:
    """The fused profile of `person` (core/persons.py), seen now as face track `track_id`."""
    attrs = profile.attributes
    return UserProfile(
        header=header,
        track_id=track_id,
        person_id=person.person_id,
        anonymous=person.anonymous,
        visits=person.visits,
        age_group=attribute_to_msg(attrs["age_group"]),
        age_years=float(profile.age_years),
        gender=attribute_to_msg(attrs["gender"]),
        ethnicity=attribute_to_msg(attrs["ethnicity"]),
        emotion=attribute_to_msg(attrs["emotion"]),
        observations=profile.observations,
        seconds_since_first_seen=float(profile.seconds_since_first_seen),
        profile_text=profile.profile_text,
        model_id=model_id,
        timings=timings,
    )


def face_to_observation(face: Face) -> FaceObservation:
    """What the engagement estimator needs of a Face: normalised box, landmarks, roll."""
    landmarks = None
    if len(face.landmarks) == Face.NUM_LANDMARKS:
        landmarks = np.array([[p.x, p.y] for p in face.landmarks], dtype=np.float64)
    roi = (float(face.xmin), float(face.ymin), float(face.xmax), float(face.ymax))
    return FaceObservation(face.track_id, roi, landmarks, float(face.roll_deg))


def set_engagement(msg: UserProfile, status: EngagementStatus | None) -> UserProfile:
    """Fill a profile's roi and engagement fields (UNKNOWN, roi 0 when the track has none)."""
    if status is not None:
        msg.roi = [float(v) for v in status.roi]
        msg.engagement = float(status.score)
        msg.engagement_state = status.state
        msg.engaged = status.engaged
    return msg


def profile_label_lines(msg: UserProfile) -> list[str]:
    """The debug image's label lines for a profile; abstentions read "ethnicity: ?"."""
    return profile_lines(
        {
            a.name or name: (a.label if a.known else None)
            for name, a in (
                ("gender", msg.gender),
                ("age_group", msg.age_group),
                ("ethnicity", msg.ethnicity),
                ("emotion", msg.emotion),
            )
        }
    )


def faces_to_people(faces: FaceArray, profiles: Mapping[int, UserProfile]) -> list[Person]:
    """The faces of one frame, labelled with their tracks' profiles, for core.overlay."""
    width, height = faces.image_width, faces.image_height
    people = []
    for face in faces.faces:
        profile = profiles.get(face.track_id)
        people.append(
            Person(
                (face.xmin * width, face.ymin * height, face.xmax * width, face.ymax * height),
                face.track_id,
                profile_label_lines(profile) if profile is not None else (),
                bool(profile.engaged) if profile is not None else False,
                [(p.x, p.y) for p in face.landmarks],
            )
        )
    return people


def face_landmarks(face: Face) -> np.ndarray:
    """A Face's landmarks, an (n, 2) float32 array of pixels (NaN: no such point detected)."""
    return np.array([(p.x, p.y) for p in face.landmarks], np.float32).reshape(-1, 2)


def face_px(face: Face, image_width: int, image_height: int) -> float:
    """Side of the face box in source pixels (roi, else the normalised box); NaN if unknown."""
    if face.roi.width > 0 and face.roi.height > 0:
        return float(min(face.roi.width, face.roi.height))
    side = min((face.xmax - face.xmin) * image_width, (face.ymax - face.ymin) * image_height)
    return float(side) if side > 0 else math.nan


def faces_to_profile(faces: list[Face], limit: int) -> tuple[list[Face], list[int], int]:
    """The `limit` largest faces with a valid, distinct track id (0 is never a face): (those
    faces, the track ids rejected, how many valid ones were skipped beyond the limit)."""
    valid, rejected, seen = [], [], set()
    for face in faces:
        if face.track_id == 0 or face.track_id in seen:
            rejected.append(face.track_id)
            continue
        seen.add(face.track_id)
        valid.append(face)
    skipped = max(len(valid) - limit, 0)
    if skipped:
        valid.sort(key=_face_area, reverse=True)
        valid = valid[:limit]
    return valid, rejected, skipped


def _face_area(face: Face) -> float:
    area = (face.xmax - face.xmin) * (face.ymax - face.ymin)
    return area if math.isfinite(area) else 0.0
