"""The graph's messages as plain Python data, for code that runs without ROS.

ros/message_data.py makes these from UserProfile, Response, Transcript, DiagnosticStatus and
the speech events; the console (console/state.py) takes nothing else, so no message type,
rclpy's `bytes` levels included, reaches console/ (test/test_layers.py checks it). Fields keep
the messages' names and meanings (msg/*.msg).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class AttributeData:
    """One AttributeEstimate of a profile."""

    name: str
    label: str
    known: bool
    abstain_reason: str = ""
    confidence: float = 0.0


@dataclass(frozen=True)
class ProfileData:
    """A UserProfile."""

    track_id: int
    person_id: str = ""
    visits: int = 0  # 0 from a profiler that does not count visits
    roi: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)  # all zero: not known
    engagement: float = 0.0
    engagement_state: int = 0  # REP-155 EngagementLevel value
    engaged: bool = False
    attributes: tuple[AttributeData, ...] = ()  # in labels.ATTRIBUTES order
    age_years: float = float("nan")  # NaN when unknown
    observations: int = 0
    seconds_since_first_seen: float = 0.0
    profile_text: str = ""
    model_id: str = ""


@dataclass(frozen=True)
class StageTime:
    """One entry of Response.timings."""

    stage: str
    duration_ms: float


@dataclass(frozen=True)
class ResponseData:
    """A Response: from the topic, or a Respond result."""

    request_id: str
    final: bool
    text: str = ""
    question: str = ""
    source: str = ""  # who asked: voice, cli, console, topic, ...
    track_id: int = 0
    person_id: str = ""
    addressee: str = ""
    error: str = ""
    gesture: str = ""
    sentiment: str = ""
    mode: str = ""
    responder: str = ""
    timings: tuple[StageTime, ...] = ()


@dataclass(frozen=True)
class TranscriptData:
    """A Transcript; `audio_start` is its (sec, nanosec) stamp, which names an utterance."""

    audio_start: tuple[int, int]
    text: str = ""
    confidence: float = 0.0
    request_id: str = ""
    dropped: str = ""


@dataclass(frozen=True)
class StatusData:
    """One DiagnosticStatus; `level` as an int (0 OK, 1 WARN, 2 ERROR, 3 STALE)."""

    name: str
    level: int
    message: str = ""
    hardware_id: str = ""
    values: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SpeechEventData:
    """A speech event of naoqi_bridge_node about an answer."""

    event: str  # started, finished, dropped, ...
    request_id: str = ""
    part: str = ""  # which part of the answer ("early", "full", ...), "" when not said
    detail: str = ""
