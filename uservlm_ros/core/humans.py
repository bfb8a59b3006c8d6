"""REP-155 (ROS4HRI) conventions without ROS: ids, topic names and uservlm -> REP-155 mappings.

`uservlm_ros/ros/rep155.py` publishes with these; they live here so they test without rclpy.
"""

from __future__ import annotations

import math
import re

# REP-155 ids become topic name parts (humans/faces/<id>/roi): a ROS name token, and no "__"
# (reserved for ROS-internal names).
_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# The one voice of speech_node: the robot's microphone does not tell speakers apart, so every
# utterance is this voice's (not a person's; no person is associated with it).
ROBOT_VOICE_ID = "anonymous_speaker"

# hri_msgs/SoftBiometrics gender values.
GENDER_UNDEFINED, GENDER_FEMALE, GENDER_MALE = 0, 1, 2
_GENDERS = {"Female": GENDER_FEMALE, "Male": GENDER_MALE}

# uservlm's emotion labels (core/labels.EMOTIONS) -> hri_msgs/Expression names.
EXPRESSIONS = {
    "angry": "angry",
    "disgust": "disgusted",
    "fear": "scared",
    "happy": "happy",
    "sad": "sad",
    "surprise": "surprised",
    "neutral": "neutral",
}

# hri_msgs/EngagementLevel.level: UNKNOWN .. DISENGAGING.
ENGAGEMENT_LEVELS = range(5)


def valid_id(value: object) -> bool:
    """Whether `value` can be a REP-155 face/person/voice id."""
    return isinstance(value, str) and bool(_TOKEN.fullmatch(value)) and "__" not in value


def check_id(value: object, kind: str) -> str:
    """`value` if it is a valid id, else ValueError with one line naming the `kind` of id."""
    if not valid_id(value):
        raise ValueError(f"invalid REP-155 {kind} id {value!r}: not a ROS name token")
    return value


def face_topic(prefix: str, face_id: str, leaf: str) -> str:
    return f"{prefix}/faces/{face_id}/{leaf}"


def person_topic(prefix: str, person_id: str, leaf: str) -> str:
    return f"{prefix}/persons/{person_id}/{leaf}"


def voice_topic(prefix: str, voice_id: str, leaf: str) -> str:
    return f"{prefix}/voices/{voice_id}/{leaf}"


def age_years(value: float) -> int | None:
    """A uint8 age from uservlm's point estimate; None when unknown (NaN, negative)."""
    if not math.isfinite(value) or value < 0:
        return None
    return min(round(value), 255)


def gender_code(label: str, known: bool) -> int:
    """FairFace Male/Female -> SoftBiometrics MALE/FEMALE; anything else UNDEFINED."""
    return _GENDERS.get(label, GENDER_UNDEFINED) if known else GENDER_UNDEFINED


def expression_name(label: str, known: bool) -> str | None:
    """uservlm emotion -> REP-155 expression name; None when unknown (nothing is published)."""
    return EXPRESSIONS.get(label) if known else None


def unit(value: float) -> float:
    """A float confidence clamped to 0..1 (NaN -> 0; an int would abort the message's C
    conversion)."""
    value = float(value)
    return min(max(value, 0.0), 1.0) if math.isfinite(value) else 0.0
