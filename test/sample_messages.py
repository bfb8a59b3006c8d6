"""Fully populated instances of every uservlm interface, for round-trip and transport tests."""

from __future__ import annotations

import array
import math

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point
from sensor_msgs.msg import Image, RegionOfInterest
from std_msgs.msg import Header
from uservlm.action import Respond
from uservlm.msg import (
    AttributeEstimate,
    AudioChunk,
    Face,
    FaceArray,
    Response,
    StageTiming,
    Transcript,
    UserProfile,
)

STAMP = Time(sec=1_700_000_000, nanosec=123_456_789)


def crop_image(size: int = 224) -> Image:
    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    return Image(
        header=Header(stamp=STAMP, frame_id="camera"),
        height=size,
        width=size,
        encoding="rgb8",
        is_bigendian=0,
        step=size * 3,
        data=pixels.tobytes(),
    )


def face(track_id: int = 3) -> Face:
    landmarks = [Point(x=100.0 + i, y=80.0 + 2 * i, z=0.0) for i in range(Face.NUM_LANDMARKS)]
    landmarks[Face.LANDMARK_LEFT_EAR] = Point(x=math.nan, y=math.nan, z=0.0)
    return Face(
        track_id=track_id,
        xmin=0.1,
        ymin=0.2,
        xmax=0.4,
        ymax=0.6,
        roi=RegionOfInterest(x_offset=64, y_offset=96, width=192, height=192),
        confidence=0.93,
        landmarks=landmarks,
        roll_deg=-4.5,
        crop=crop_image(),
    )


def timings(*stages: str) -> list[StageTiming]:
    return [StageTiming(stage=stage, duration_ms=1.5 * (i + 1)) for i, stage in enumerate(stages)]


def face_array() -> FaceArray:
    return FaceArray(
        header=Header(stamp=STAMP, frame_id="camera"),
        image_width=640,
        image_height=480,
        faces=[face(3)],
        timings=timings("detect", "track"),
    )


def attribute(name: str, labels: list[str], probs: list[float]) -> AttributeEstimate:
    best = int(np.argmax(probs))
    return AttributeEstimate(
        name=name,
        label=labels[best],
        known=True,
        abstain_reason="",
        confidence=probs[best],
        label_names=labels,
        probabilities=probs,
    )


def user_profile() -> UserProfile:
    ages = ["0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70+"]
    return UserProfile(
        header=Header(stamp=STAMP, frame_id="camera"),
        track_id=3,
        roi=[0.1, 0.2, 0.4, 0.6],
        engagement=0.75,
        engagement_state=UserProfile.ENGAGEMENT_ENGAGED,
        engaged=True,
        age_group=attribute("age_group", ages, [0.0, 0.0, 0.0, 0.05, 0.1, 0.15, 0.6, 0.1, 0.0]),
        age_years=54.0,
        gender=attribute("gender", ["Male", "Female"], [0.8, 0.2]),
        ethnicity=AttributeEstimate(
            name="ethnicity",
            label=AttributeEstimate.UNKNOWN,
            known=False,
            abstain_reason="not_supported",
        ),
        emotion=attribute(
            "emotion",
            ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"],
            [0.0, 0.0, 0.0, 0.7, 0.0, 0.1, 0.2],
        ),
        observations=12,
        seconds_since_first_seen=3.5,
        profile_text="The person appears to be a Male, approximately 50 to 59 years old.",
        model_id="attributes@test",
        timings=timings("detect", "profile"),
    )


def response() -> Response:
    return Response(
        header=Header(stamp=STAMP),
        request_id="req-1",
        track_id=3,
        addressee=Response.ADDRESSEE_ENGAGED,
        question="What am I wearing?",
        text="You are wearing a blue jacket.",
        final=True,
        gesture="explain",
        sentiment="neutral",
        mode=Response.MODE_USER_AWARE,
        responder="fallback-template",
        error="",
        camera_stamp=STAMP,
        image_roi=[0.05, 0.1, 0.45, 0.9],
        timings=timings("queue", "generate"),
    )


def respond_goal() -> Respond.Goal:
    return Respond.Goal(
        question="What am I wearing?",
        track_id=3,
        mode="profile_prompt",
        max_new_tokens=20,
        adapter="instruct",
        source="cli",
    )


def audio_chunk() -> AudioChunk:
    samples = (np.sin(np.arange(2720) * 0.05) * 8000).astype(np.int16)
    return AudioChunk(
        header=Header(stamp=STAMP, frame_id="pepper_front_mic"),
        sample_rate=16000,
        channels=1,
        samples=samples.tolist(),
    )


def transcript() -> Transcript:
    return Transcript(
        header=Header(stamp=STAMP),
        request_id="req-1",
        text="What am I wearing?",
        final=True,
        confidence=0.82,
        language="en",
        audio_start=Time(sec=STAMP.sec - 2, nanosec=0),
        audio_end=STAMP,
        vad_ms=12.5,
        asr_ms=420.0,
        dropped="",
    )


def all_interfaces() -> dict[str, object]:
    return {
        "StageTiming": StageTiming(stage="detect", duration_ms=3.25),
        "Face": face(),
        "FaceArray": face_array(),
        "AttributeEstimate": user_profile().gender,
        "UserProfile": user_profile(),
        "Response": response(),
        "AudioChunk": audio_chunk(),
        "Transcript": transcript(),
        "Respond.Goal": respond_goal(),
        "Respond.Result": Respond.Result(response=response()),
        "Respond.Feedback": Respond.Feedback(partial_text="You are", tokens_generated=2),
    }


def same_message(a, b) -> bool:
    """Field-by-field equality; NaN equals NaN (missing landmarks), floats to float32 precision."""
    if hasattr(a, "get_fields_and_field_types"):
        return type(a) is type(b) and all(
            same_message(getattr(a, field), getattr(b, field))
            for field in a.get_fields_and_field_types()
        )
    if isinstance(a, float):  # float32 fields keep ~7 significant digits
        return isinstance(b, float) and (
            (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
        )
    if isinstance(a, list | tuple | array.array | bytes | bytearray | np.ndarray):
        a, b = list(a), list(b)
        return len(a) == len(b) and all(same_message(x, y) for x, y in zip(a, b, strict=True))
    return a == b
