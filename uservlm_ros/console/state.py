"""What the console page shows, kept up to date from the graph's messages.

Pure Python: console_node turns each message (UserProfile, Response, Transcript,
DiagnosticStatus, a speech event) into plain data first (core/message_data.py), so this module
runs and is tested without ROS.
People are kept by person (UserProfile.person_id), not by face track: a person who comes back
with a new track is the same card, and a track's anonymous person is replaced by the known one
once identified. Profiles carry no embeddings, and nothing here would show one.
An attribute switched off (privacy) is hidden at once on every card, not only on the next
profile: a card out of view gets none. Utterances the speech node heard but did not ask are
an entry when it recognised text worth showing, and otherwise (the robot hearing itself,
recognition busy) one counter per reason (`not_asked`). Health shows the console's own
namespace: two robots on one domain share /diagnostics.
Callers on several threads (ROS callbacks, the web server) share one ConsoleState: every method
takes its lock. Each section of the page (people, conversation, not_asked, health, privacy,
camera) has a version number that changes with it, so the server sends only what changed.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from uservlm_ros.core import labels
from uservlm_ros.core.message_data import (
    AttributeData,
    ProfileData,
    ResponseData,
    SpeechEventData,
    StatusData,
    TranscriptData,
)
from uservlm_ros.core.parameters import setting
from uservlm_ros.core.persons import is_anonymous
from uservlm_ros.core.presence import answer_for, person_id_of

SECTIONS = ("people", "conversation", "not_asked", "health", "privacy", "camera")
# REP-155 EngagementLevel values, as UserProfile.ENGAGEMENT_* carries them.
ENGAGEMENT_STATES = ("unknown", "disengaged", "engaging", "engaged", "disengaging")
# diagnostic_msgs/DiagnosticStatus levels.
LEVELS = {0: "OK", 1: "WARN", 2: "ERROR", 3: "STALE"}
BRIDGE = "naoqi_bridge_node"  # whose diagnostics say whether the robot is connected
# Heard but not asked, with nothing recognised worth a line of its own: counted instead.
COUNTED_DROPS = ("robot_speaking",)
MAX_HEALTH_ENTRIES = 64  # other packages may publish on /diagnostics too: stay bounded


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _namespace_of(name: str) -> str | None:
    """`/robot1/camera_node` -> `/robot1`, `/camera_node` -> `/`; None for a name that is not
    a node's full name (another package's status)."""
    if not name.startswith("/"):
        return None
    return name.rsplit("/", 1)[0] or "/"


def attribute_view(estimate: AttributeData) -> dict[str, Any]:
    return {
        "name": estimate.name,
        "label": estimate.label,
        "known": estimate.known,
        "reason": estimate.abstain_reason,
        "confidence": round(estimate.confidence, 3),
    }


def profile_view(profile: ProfileData, seen: float) -> dict[str, Any]:
    """A profile as the page shows it; `seen` is the wall time it arrived."""
    state = profile.engagement_state
    roi = [round(v, 4) for v in profile.roi]
    person_id = person_id_of(profile.person_id, profile.track_id)
    return {
        "person_id": person_id,
        "anonymous": is_anonymous(person_id),
        "visits": max(1, profile.visits),
        "track_id": profile.track_id,
        "roi": roi if any(roi) else None,
        "engagement": round(profile.engagement, 3),
        "engagement_state": (
            ENGAGEMENT_STATES[state] if state < len(ENGAGEMENT_STATES) else str(state)
        ),
        "engaged": profile.engaged,
        "attributes": [attribute_view(a) for a in profile.attributes],
        "age_years": _finite(profile.age_years),
        "observations": profile.observations,
        "seconds_in_view": round(profile.seconds_since_first_seen, 1),
        "profile_text": profile.profile_text,
        "model_id": profile.model_id,
        "seen": seen,
    }


@dataclass
class Exchange:
    """One question and its answer, however it was asked (console, voice, topic, cli)."""

    key: str  # the request id, or "heard:<audio start>" for speech that was not asked
    source: str = ""  # who asked: "console", "voice", "cli", "topic" ... (Response.source)
    question: str = ""
    heard: str = ""  # what the speech node recognised
    heard_confidence: float | None = None
    dropped: str = ""  # why the speech was not asked ("" when it was)
    track_id: int = 0
    person_id: str = ""
    addressee: str = ""
    partial: str = ""  # the answer streamed so far (console questions)
    tokens: int = 0
    early: str = ""  # the first sentence, sent ahead of the final answer
    text: str = ""
    final: bool = False
    gesture: str = ""
    sentiment: str = ""
    mode: str = ""
    responder: str = ""
    error: str = ""
    speech: str = ""  # the robot's latest speech event for this answer
    timings: list[dict[str, Any]] = field(default_factory=list)
    started: float = 0.0  # wall time the exchange was first seen
    finished: float | None = None

    @property
    def status(self) -> str:
        if self.dropped:
            return "not_asked"
        if self.final:
            return "error" if self.error else "answered"
        if self.partial or self.early:
            return "streaming"
        return "asked" if self.question else "heard"

    def view(self) -> dict[str, Any]:
        view = asdict(self)
        view["status"] = self.status
        view["answer_for"] = answer_for(self.person_id, self.track_id, self.addressee)
        return view


@dataclass
class Person:
    view: dict[str, Any]
    seen: float


def _withhold(view: dict[str, Any], disabled: Iterable[str]) -> None:
    """Hide what the profiler may no longer estimate from a card made before it was switched
    off: the attribute, the age in years with the age group, and the profile text (written
    with it)."""
    hidden = False
    for attribute in view["attributes"]:
        if attribute["name"] in disabled and attribute["reason"] != "disabled":
            attribute.update(label="unknown", known=False, reason="disabled", confidence=0.0)
            hidden = True
    if "age_group" in disabled and view["age_years"] is not None:
        view["age_years"], hidden = None, True
    if hidden:
        view["profile_text"] = ""


@dataclass(frozen=True)
class StateConfig:
    """How long the page keeps what it shows (console_node's live parameters of these names)."""

    people_expiry_s: float = setting(5.0, name="people.expiry_s", min=0.5, max=3600.0, live=True)
    """A person leaves the list after this long without a profile"""
    max_exchanges: int = setting(50, name="conversation.max_entries", min=1, max=1000, live=True)
    """Exchanges kept on the page"""
    health_stale_s: float = setting(5.0, name="health.stale_s", min=1.0, max=3600.0, live=True)
    """A node whose diagnostics are silent this long is shown STALE"""


class ConsoleState:
    def __init__(
        self,
        config: StateConfig = StateConfig(),
        *,
        namespace: str = "/",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self.config = config  # replaced whole when a parameter changes
        self.namespace = "/" + namespace.strip("/") if namespace.strip("/") else "/"
        self.versions = dict.fromkeys(SECTIONS, 0)
        self._people: dict[str, Person] = {}  # by person id
        self._exchanges: OrderedDict[str, Exchange] = OrderedDict()
        self._not_asked: dict[str, dict[str, Any]] = {}  # reason -> count, last
        self._health: dict[str, dict[str, Any]] = {}
        self._stale: set[str] = set()
        self._privacy: dict[str, dict[str, Any]] = {
            name: {"enabled": None, "pending": False, "error": ""} for name in labels.ATTRIBUTES
        }
        self._privacy_node = {"name": "", "available": False, "error": ""}
        self._switched_off: dict[str, float] = {}  # attribute -> when it was last switched off
        self._camera: dict[str, Any] = {"enabled": True, "streaming": False, "fps": 0.0}

    def _bump(self, section: str) -> None:
        self.versions[section] += 1

    # -- people

    def on_profile(self, profile: ProfileData) -> None:
        now = self._clock()
        view = profile_view(profile, now)
        with self._lock:
            _withhold(view, self._disabled())  # made before the switch, arriving after it
            # Another card on this track was this face under its old (anonymous) id.
            for person_id in [
                p
                for p, person in self._people.items()
                if person.view["track_id"] == view["track_id"] and p != view["person_id"]
            ]:
                del self._people[person_id]
            self._people[view["person_id"]] = Person(view, now)
            self._bump("people")

    def forgot(self, person_id: str) -> None:
        """The profiler forgot this person ("" = everyone): drop the card(s) now; whoever is
        still in view comes back with their next profile, under the id they get then."""
        with self._lock:
            if person_id:
                self._people.pop(person_id, None)
            else:
                self._people.clear()
            self._bump("people")

    # -- conversation

    def _exchange(self, key: str, now: float) -> Exchange:
        exchange = self._exchanges.get(key)
        if exchange is None:
            exchange = self._exchanges[key] = Exchange(key=key, started=now)
            while len(self._exchanges) > self.config.max_exchanges:
                self._exchanges.popitem(last=False)
        return exchange

    def asked(
        self, request_id: str, question: str, track_id: int, source: str, person_id: str = ""
    ) -> None:
        """A question this console (or another known source) sent."""
        with self._lock:
            exchange = self._exchange(request_id, self._clock())
            exchange.question, exchange.track_id, exchange.source = question, track_id, source
            exchange.person_id = person_id
            self._bump("conversation")

    def on_partial(self, request_id: str, text: str, tokens: int) -> None:
        with self._lock:
            exchange = self._exchanges.get(request_id)
            if exchange is None or exchange.final:
                return
            exchange.partial, exchange.tokens = text, tokens
            self._bump("conversation")

    def on_response(self, msg: ResponseData) -> None:
        """An early or final Response (the topic, or a Respond result: the first final wins)."""
        now = self._clock()
        with self._lock:
            exchange = self._exchange(msg.request_id, now)
            if exchange.final:
                return
            exchange.question = exchange.question or msg.question
            exchange.source = exchange.source or msg.source
            exchange.track_id = msg.track_id
            if msg.track_id:
                exchange.person_id = person_id_of(msg.person_id, msg.track_id)
            exchange.addressee = msg.addressee
            if not msg.final:
                exchange.early = msg.text
            else:
                exchange.final, exchange.finished = True, now
                exchange.text, exchange.error = msg.text, msg.error
                exchange.gesture, exchange.sentiment = msg.gesture, msg.sentiment
                exchange.mode, exchange.responder = msg.mode, msg.responder
                exchange.timings = [
                    {"stage": t.stage, "ms": round(t.duration_ms, 1)} for t in msg.timings
                ]
            self._bump("conversation")

    def on_speech_event(self, event: SpeechEventData) -> None:
        """A naoqi_bridge_node speech event about an answer."""
        with self._lock:
            exchange = self._exchanges.get(event.request_id)
            if exchange is None:
                return
            exchange.speech = f"{event.event} ({event.part})" if event.part else event.event
            if event.detail:
                exchange.speech += f": {event.detail}"
            self._bump("conversation")

    def on_transcript(self, msg: TranscriptData) -> None:
        """What the speech node heard; tied to its question by request id when it asked one."""
        now = self._clock()
        sec, nanosec = msg.audio_start
        heard_key = f"heard:{sec}.{nanosec:09d}"
        with self._lock:
            if msg.dropped and (msg.dropped in COUNTED_DROPS or not msg.text):
                if self._exchanges.pop(heard_key, None) is not None:  # its interim entry
                    self._bump("conversation")
                counter = self._not_asked.setdefault(msg.dropped, {"count": 0, "last": now})
                counter["count"] += 1
                counter["last"] = now
                self._bump("not_asked")
                return
            key = msg.request_id or heard_key
            if msg.request_id and heard_key in self._exchanges:
                # an interim transcript of the same utterance: keep its place, take the id
                earlier = self._exchanges.pop(heard_key)
                self._exchanges[key] = earlier
                earlier.key = key
            exchange = self._exchange(key, now)
            exchange.source = "voice"
            exchange.heard = msg.text
            exchange.heard_confidence = round(msg.confidence, 3)
            exchange.dropped = msg.dropped
            if msg.request_id and not exchange.question:
                exchange.question = msg.text
            self._bump("conversation")

    # -- health

    def on_diagnostics(self, statuses: Iterable[StatusData]) -> None:
        """One DiagnosticArray's statuses."""
        now = self._clock()
        with self._lock:
            for status in statuses:
                name = status.name.removeprefix("uservlm: ")
                if _namespace_of(name) not in (None, self.namespace):
                    continue  # another robot's node
                if name not in self._health and len(self._health) >= MAX_HEALTH_ENTRIES:
                    continue
                self._health[name] = {
                    "name": name,
                    "level": LEVELS.get(status.level, str(status.level)),
                    "message": status.message,
                    "hardware_id": status.hardware_id,
                    "values": dict(status.values),
                    "received": now,
                }
                self._stale.discard(name)
            self._bump("health")

    # -- privacy switches (the profiler's enable.* parameters)

    def set_privacy_node(self, name: str, available: bool, error: str = "") -> None:
        with self._lock:
            new = {"name": name, "available": available, "error": error}
            if new != self._privacy_node:
                self._privacy_node = new
                self._bump("privacy")

    def set_privacy(
        self, attribute: str, enabled: bool | None = None, pending: bool = False, error: str = ""
    ) -> None:
        now = self._clock()
        with self._lock:
            entry = self._privacy[attribute]
            if enabled is False and entry["enabled"] is not False:
                self._switched_off[attribute] = now
            if enabled is not None:
                entry["enabled"] = enabled
            entry["pending"], entry["error"] = pending, error
            self._bump("privacy")
            if enabled is False:
                for person in self._people.values():
                    _withhold(person.view, (attribute,))
                self._bump("people")

    def switched_off(self) -> dict[str, float]:
        """When each attribute was last switched off (clock time): anything estimated before
        that is withheld, also where the console draws it on the camera frames."""
        with self._lock:
            return dict(self._switched_off)

    def _disabled(self) -> tuple[str, ...]:
        return tuple(a for a, entry in self._privacy.items() if entry["enabled"] is False)

    # -- camera

    def set_camera(self, **values: bool | float | str) -> None:
        with self._lock:
            if any(self._camera.get(k) != v for k, v in values.items()):
                self._camera.update(values)
                self._bump("camera")

    # -- time passing

    def tick(self) -> None:
        """Forget people not seen for people_expiry_s; mark silent nodes STALE."""
        now, config = self._clock(), self.config
        with self._lock:
            gone = [i for i, p in self._people.items() if now - p.seen > config.people_expiry_s]
            for person_id in gone:
                del self._people[person_id]
            if gone:
                self._bump("people")
            stale = {
                n for n, h in self._health.items() if now - h["received"] > config.health_stale_s
            }
            if stale != self._stale:
                self._stale = stale
                self._bump("health")

    # -- views for the page

    def section(self, name: str) -> Any:
        with self._lock:
            return self._section(name)

    def _section(self, name: str) -> Any:
        if name == "people":
            people = sorted(
                self._people.values(), key=lambda p: (p.view["track_id"], p.view["person_id"])
            )
            return [p.view for p in people]
        if name == "conversation":
            return [e.view() for e in self._exchanges.values()]
        if name == "not_asked":
            return _copy(self._not_asked)
        if name == "health":
            nodes = []
            for health in sorted(self._health.values(), key=lambda h: h["name"]):
                view = dict(health)
                if health["name"] in self._stale:
                    view["level"] = "STALE"
                nodes.append(view)
            return {"nodes": nodes, "robot": self._robot(nodes)}
        if name == "privacy":
            return {"node": dict(self._privacy_node), "attributes": _copy(self._privacy)}
        if name == "camera":
            return dict(self._camera)
        raise KeyError(name)

    @staticmethod
    def _robot(nodes: Iterable[dict[str, Any]]) -> dict[str, Any]:
        """Whether the robot is connected, as the speech bridge last said."""
        bridge = next((n for n in nodes if n["name"].rsplit("/", 1)[-1] == BRIDGE), None)
        if bridge is None:
            return {"state": "unknown", "detail": f"no {BRIDGE} diagnostics"}
        if bridge["level"] == "STALE":
            return {"state": "unknown", "detail": f"{BRIDGE} is silent"}
        connected = bridge["level"] == "OK"
        return {"state": "connected" if connected else "not_connected", "detail": bridge["message"]}

    def changes(self, seen: Mapping[str, int]) -> tuple[dict[str, Any], dict[str, int]]:
        """The sections whose version differs from `seen`, and the current versions."""
        with self._lock:
            changed = {n: self._section(n) for n in SECTIONS if self.versions[n] != seen.get(n)}
            return changed, dict(self.versions)


def _copy(entries: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    return {k: dict(v) for k, v in entries.items()}
