"""Messages -> plain data (core/message_data.py), for modules that must not see messages.

console_node hands the console these instead of the messages (the console runs without ROS).
"""

from __future__ import annotations

from diagnostic_msgs.msg import DiagnosticArray
from uservlm.msg import Response, Transcript, UserProfile

from uservlm_ros.core import labels
from uservlm_ros.core.message_data import (
    AttributeData,
    ProfileData,
    ResponseData,
    SpeechEventData,
    StageTime,
    StatusData,
    TranscriptData,
)


def profile(msg: UserProfile) -> ProfileData:
    attributes = tuple(
        AttributeData(name, a.label, bool(a.known), a.abstain_reason, float(a.confidence))
        for name, a in ((name, getattr(msg, name)) for name in labels.ATTRIBUTES)
    )
    return ProfileData(
        track_id=int(msg.track_id),
        person_id=msg.person_id,
        visits=int(msg.visits),
        roi=tuple(float(v) for v in msg.roi),
        engagement=float(msg.engagement),
        engagement_state=int(msg.engagement_state),
        engaged=bool(msg.engaged),
        attributes=attributes,
        age_years=float(msg.age_years),
        observations=int(msg.observations),
        seconds_since_first_seen=float(msg.seconds_since_first_seen),
        profile_text=msg.profile_text,
        model_id=msg.model_id,
    )


def response(msg: Response) -> ResponseData:
    return ResponseData(
        request_id=msg.request_id,
        final=bool(msg.final),
        text=msg.text,
        question=msg.question,
        source=msg.source,
        track_id=int(msg.track_id),
        person_id=msg.person_id,
        addressee=msg.addressee,
        error=msg.error,
        gesture=msg.gesture,
        sentiment=msg.sentiment,
        mode=msg.mode,
        responder=msg.responder,
        timings=tuple(StageTime(t.stage, float(t.duration_ms)) for t in msg.timings),
    )


def transcript(msg: Transcript) -> TranscriptData:
    return TranscriptData(
        audio_start=(msg.audio_start.sec, msg.audio_start.nanosec),
        text=msg.text,
        confidence=float(msg.confidence),
        request_id=msg.request_id,
        dropped=msg.dropped,
    )


def statuses(msg: DiagnosticArray) -> list[StatusData]:
    # rclpy gives a status level as a one-byte `bytes`
    return [
        StatusData(
            s.name,
            s.level[0] if isinstance(s.level, bytes) and s.level else int(s.level or 0),
            s.message,
            s.hardware_id,
            {kv.key: kv.value for kv in s.values},
        )
        for s in msg.status
    ]


def speech_event(msg) -> SpeechEventData:
    """A uservlm/SpeechEvent."""
    return SpeechEventData(msg.event, msg.request_id, msg.part, msg.detail)
