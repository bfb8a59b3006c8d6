"""Conversions between the perception dataclasses (core/, backends/) and uservlm messages."""

from __future__ import annotations

import math
import time

from geometry_msgs.msg import Point
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import RegionOfInterest
from std_msgs.msg import Header
from uservlm.msg import AttributeEstimate, Face, StageTiming, UserProfile

from uservlm_ros.backends.face_pipeline import TrackedFace
from uservlm_ros.core.fusion import AttributeResult, FusedProfile
from uservlm_ros.ros_support import SENSOR_QOS, rgb_to_image

# Camera frames: "sensor" (best effort, as camera drivers publish) or "reliable" with a depth of
# 1 (still only the newest frame): Fast DDS loses fragments of large best-effort images (a
# 640x480 rgb8 frame is 900 KB) on a loaded host, where reliable delivery repairs them.
IMAGE_QOS = {
    "sensor": SENSOR_QOS,
    "reliable": QoSProfile(
        depth=1, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST
    ),
}


def log_rejection(node, last_logged: dict[str, float], text: str, every_s: float = 5.0) -> None:
    """Log each distinct bad-input message at once, repeats at most every `every_s` seconds."""
    now = time.monotonic()
    if len(last_logged) > 100:  # many distinct texts (sizes vary): forget, stay bounded
        last_logged.clear()
    if now - last_logged.get(text, -math.inf) >= every_s:
        last_logged[text] = now
        node.get_logger().warning(text)


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
    profile: FusedProfile, header: Header, model_id: str, timings: list[StageTiming]
) -> UserProfile:
    attrs = profile.attributes
    return UserProfile(
        header=header,
        track_id=profile.track_id,
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
