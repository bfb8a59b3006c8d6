"""The console without ROS: access rules, what the page shows, and the web server's endpoints."""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import json
import math
from dataclasses import replace

import aiohttp
import cv2
import numpy as np
import pytest

from uservlm_ros.console import security
from uservlm_ros.console.camera import FrameThrottle, encode_jpeg
from uservlm_ros.console.privacy import ANSWER_S, PrivacySwitches, attribute_of, switch_parameter
from uservlm_ros.console.server import ConsoleServer, Forgotten
from uservlm_ros.console.state import ConsoleState, StateConfig
from uservlm_ros.core import labels
from uservlm_ros.core.errors import ConfigError, UservlmError
from uservlm_ros.core.frame_pairing import FramePairing
from uservlm_ros.core.message_data import (
    AttributeData,
    ProfileData,
    ResponseData,
    SpeechEventData,
    StageTime,
    StatusData,
    TranscriptData,
)

# -- access rules


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.20", False),
        ("pepper.local", False),
    ],
)
def test_only_a_loopback_bind_goes_without_token(host, loopback):
    assert security.is_loopback(host) is loopback
    assert security.token_required(host) is not loopback


def test_token_file(tmp_path):
    good = tmp_path / "token"
    good.write_text("abcdefghijklmnopqrstuvwxyz\nsecond line ignored\n")
    assert security.read_token(good) == "abcdefghijklmnopqrstuvwxyz"
    short = tmp_path / "short"
    short.write_text("abc\n")
    with pytest.raises(ConfigError, match="at least 16 characters"):
        security.read_token(short)
    with pytest.raises(ConfigError, match="cannot be read"):
        security.read_token(tmp_path / "missing")
    assert len(security.new_token()) >= security.MIN_TOKEN_CHARS


def test_the_token_comes_from_its_file_else_is_made_for_a_non_loopback_host(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("abcdefghijklmnopqrstuvwxyz\n")
    assert security.access_token(str(token_file), "0.0.0.0") == "abcdefghijklmnopqrstuvwxyz"
    assert security.access_token(str(token_file), "127.0.0.1") == "abcdefghijklmnopqrstuvwxyz"
    assert security.access_token("", "127.0.0.1") is None
    assert len(security.access_token("", "0.0.0.0")) >= security.MIN_TOKEN_CHARS


def test_the_announcement_logs_where_the_page_is_never_the_token():
    url = "http://127.0.0.1:8088/"
    assert security.announcement(url, 8088, "127.0.0.1", None, "") == (
        ["console at http://127.0.0.1:8088/"],
        "",
    )
    token = "abcdefghijklmnopqrstuvwxyz"
    with_token = f"http://0.0.0.0:8088/?token={token}"
    logged, printed = security.announcement(with_token, 8088, "0.0.0.0", token, "")
    assert all(token not in line for line in logged)
    assert "generated" in logged[0] and "from another machine" in logged[1]
    assert printed == f"console address with its generated token: {with_token}"
    logged, printed = security.announcement(with_token, 8088, "192.168.1.20", token, "/t")
    assert logged == ["console at http://0.0.0.0:8088/?token=<the first line of /t>"]
    assert printed == ""  # whoever wrote the file knows it


def test_host_header_and_origin_rules():
    assert security.host_of("127.0.0.1:8088") == "127.0.0.1"
    assert security.host_of("[::1]:8088") == "::1"
    assert security.loopback_host_header("localhost:8088")
    assert not security.loopback_host_header("evil.example:8088")  # DNS rebinding
    assert not security.loopback_host_header(None)
    same = "http://127.0.0.1:8088"
    assert security.cross_site(same, "same-origin", "127.0.0.1:8088") is None
    assert security.cross_site(None, None, "127.0.0.1:8088") is None  # curl, scripts
    assert "not this console" in security.cross_site("http://evil.example", None, "127.0.0.1:8088")
    assert security.cross_site("null", None, "127.0.0.1:8088")
    assert security.cross_site(None, "cross-site", "127.0.0.1:8088")
    assert security.bearer("Bearer abc") == "abc"
    assert security.bearer("Basic abc") is None


# -- what the page shows


def _estimate(name, label, confidence, reason=""):
    return AttributeData(name, label, not reason, reason, confidence)


def _profile(track_id=3, engaged=False, gender_reason="", person_id="", visits=1, age=math.nan):
    return ProfileData(
        track_id=track_id,
        person_id=person_id,
        visits=visits,
        roi=(0.1, 0.2, 0.3, 0.5),
        engagement=0.8,
        engagement_state=3 if engaged else 1,
        engaged=engaged,
        attributes=(
            _estimate("age_group", "30-39", 0.41),
            _estimate("gender", "unknown" if gender_reason else "Female", 0.0, gender_reason),
            _estimate("ethnicity", "unknown", 0.0, "not_supported"),
            _estimate("emotion", "unknown", 0.2, "low_confidence"),
        ),
        age_years=age,
        observations=12,
        seconds_since_first_seen=3.21,
        profile_text="The person appears to be a Female.",
        model_id="attributes@1",
    )


def _response(request_id, final=True, text="Hello there.", error=""):
    return ResponseData(
        request_id=request_id,
        question="Hi?",
        track_id=3,
        person_id="kqzxt",
        addressee="engaged",
        final=final,
        text=text,
        error=error,
        gesture="hey",
        sentiment="positive",
        mode="user_aware",
        responder="fallback-template",
        timings=(StageTime("generate", 12.34),),
    )


def _time(sec, nanosec=0):
    return (sec, nanosec)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_people_show_every_attribute_with_its_abstention_and_leave_after_expiry():
    clock = Clock()
    state = ConsoleState(StateConfig(people_expiry_s=5.0), clock=clock)
    state.on_profile(_profile(3, engaged=True, gender_reason="disabled"))
    state.on_profile(_profile(4))
    people = state.section("people")
    assert [p["track_id"] for p in people] == [3, 4]
    first = people[0]
    # a profiler without person ids: the track's anonymous person
    assert (first["person_id"], first["anonymous"], first["visits"]) == (
        "anonymous_person_f3",
        True,
        1,
    )
    assert first["engaged"] and first["engagement_state"] == "engaged"
    assert first["roi"] == [0.1, 0.2, 0.3, 0.5]
    assert first["age_years"] is None  # NaN is not JSON
    reasons = {a["name"]: a["reason"] for a in first["attributes"]}
    assert reasons == {
        "age_group": "",
        "gender": "disabled",
        "ethnicity": "not_supported",
        "emotion": "low_confidence",
    }
    json.dumps(people, allow_nan=False)
    clock.now += 4
    state.on_profile(_profile(4))
    clock.now += 2
    state.tick()
    assert [p["track_id"] for p in state.section("people")] == [4]


def test_people_are_persons_a_returning_face_is_the_same_card():
    clock = Clock()
    state = ConsoleState(StateConfig(people_expiry_s=5.0), clock=clock)
    state.on_profile(_profile(3))
    state.on_profile(_profile(4, person_id="abcde"))
    # track 3 is identified: its anonymous card becomes kqzxt's (one card, not two)
    state.on_profile(_profile(3, person_id="kqzxt"))
    cards = [(p["person_id"], p["anonymous"], p["track_id"]) for p in state.section("people")]
    assert cards == [("kqzxt", False, 3), ("abcde", False, 4)]
    # kqzxt comes back on a new track before the card expired: the same card, visit 2
    clock.now += 3
    state.on_profile(_profile(9, person_id="kqzxt", visits=2))
    people = state.section("people")
    assert [(p["person_id"], p["track_id"], p["visits"]) for p in people] == [
        ("abcde", 4, 1),
        ("kqzxt", 9, 2),
    ]
    assert people[1]["seen"] == clock.now  # last seen: this profile
    # the profiles carry no embedding, and a card shows none
    assert not [key for key in people[1] if "embedding" in key]
    state.forgot("kqzxt")
    assert [p["person_id"] for p in state.section("people")] == ["abcde"]
    state.on_profile(_profile(9, person_id="kqzxt", visits=2))
    versions = dict(state.versions)
    state.forgot("")
    assert state.section("people") == [] and state.versions["people"] > versions["people"]


def test_a_console_question_streams_then_ends_with_one_final_answer():
    state = ConsoleState(clock=Clock())
    state.asked("r1", "Hi?", 0, "console")
    assert state.section("conversation")[0]["status"] == "asked"
    versions = dict(state.versions)
    state.on_partial("r1", "Hello", 1)
    changed, versions = state.changes(versions)
    assert list(changed) == ["conversation"]
    assert changed["conversation"][0]["status"] == "streaming"
    assert changed["conversation"][0]["partial"] == "Hello"
    state.on_response(_response("r1", final=False, text="Hello there."))
    state.on_response(_response("r1"))
    state.on_response(_response("r1", text="a second final is ignored"))
    state.on_partial("r1", "late partial", 9)
    state.on_speech_event(SpeechEventData("started", request_id="r1", part="full"))
    (exchange,) = state.section("conversation")
    assert exchange["status"] == "answered" and exchange["text"] == "Hello there."
    assert exchange["source"] == "console" and exchange["addressee"] == "engaged"
    assert exchange["person_id"] == "kqzxt"
    assert exchange["timings"] == [{"stage": "generate", "ms": 12.3}]
    assert exchange["speech"] == "started (full)"
    state.on_response(_response("r2", error="the responder rejected the goal", text=""))
    assert state.section("conversation")[1]["status"] == "error"


def test_a_question_asked_elsewhere_shows_who_asked_and_for_whom():
    state = ConsoleState(clock=Clock())
    state.on_response(dataclasses.replace(_response("r1"), source="cli"))  # `uservlm ask`
    (exchange,) = state.section("conversation")
    assert exchange["source"] == "cli"
    assert exchange["answer_for"] == "person kqzxt (#3, engaged)"  # the tools' one wording
    state.on_response(dataclasses.replace(_response("r2"), track_id=0, person_id="", addressee=""))
    assert state.section("conversation")[1]["answer_for"] == "nobody"


def test_speech_that_was_heard_is_shown_asked_or_not():
    state = ConsoleState(StateConfig(max_exchanges=2), clock=Clock())
    heard = TranscriptData(
        request_id="", text="hello rob", confidence=0.5, dropped="", audio_start=_time(5)
    )
    state.on_transcript(heard)
    assert state.section("conversation")[0]["status"] == "heard"
    # the final transcript of the same utterance names the question it became
    state.on_transcript(replace(heard, **{"request_id": "r9", "text": "hello"}))
    (exchange,) = state.section("conversation")
    assert exchange["key"] == "r9" and exchange["question"] == "hello"
    noise = TranscriptData(
        request_id="", text="Thank you.", confidence=0.1, dropped="noise", audio_start=_time(9)
    )
    state.on_transcript(noise)
    state.on_response(_response("r10"))  # over max_exchanges: the oldest goes
    statuses = [e["status"] for e in state.section("conversation")]
    assert statuses == ["not_asked", "answered"]
    assert state.section("conversation")[0]["dropped"] == "noise"


def test_the_robot_hearing_itself_is_one_counter_line_not_an_entry_each_time():
    clock = Clock()
    state = ConsoleState(clock=clock)
    state.asked("r1", "Hi?", 0, "console")
    for second in range(5):  # Pepper's own answer, heard by its microphones
        clock.now += 1
        own = TranscriptData(
            request_id="",
            text="",
            confidence=0.0,
            dropped="robot_speaking",
            audio_start=_time(second),
        )
        state.on_transcript(own)
    # recognised, then found to overlap the robot's speech: also its own voice
    own_words = TranscriptData(
        request_id="",
        text="Hello there",
        confidence=0.8,
        dropped="robot_speaking",
        audio_start=_time(7),
    )
    state.on_transcript(own_words)
    busy = TranscriptData(
        request_id="", text="", confidence=0.0, dropped="asr_busy", audio_start=_time(8)
    )
    state.on_transcript(busy)
    assert [e["key"] for e in state.section("conversation")] == ["r1"]
    assert state.section("not_asked") == {
        "robot_speaking": {"count": 6, "last": clock.now},
        "asr_busy": {"count": 1, "last": clock.now},
    }
    # an interim transcript later dropped leaves no entry behind either
    interim = TranscriptData(
        request_id="", text="hel", confidence=0.5, dropped="", audio_start=_time(20)
    )
    state.on_transcript(interim)
    state.on_transcript(replace(interim, **{"dropped": "robot_speaking"}))
    assert [e["key"] for e in state.section("conversation")] == ["r1"]
    assert state.section("not_asked")["robot_speaking"]["count"] == 7


def test_a_privacy_switch_hides_the_attribute_on_cards_not_updated_since():
    clock = Clock()
    state = ConsoleState(clock=clock)
    state.set_privacy("gender", enabled=True)
    state.set_privacy("age_group", enabled=True)
    old = _profile(3, age=34.0)
    state.on_profile(old)
    versions = dict(state.versions)
    clock.now += 1
    state.set_privacy("gender", enabled=False)  # the card is greyed: no newer profile
    assert state.switched_off() == {"gender": clock.now}  # the camera labels withhold it too
    changed, _ = state.changes(versions)
    assert "people" in changed
    (card,) = state.section("people")
    gender = next(a for a in card["attributes"] if a["name"] == "gender")
    assert gender == {
        "name": "gender",
        "label": "unknown",
        "known": False,
        "reason": "disabled",
        "confidence": 0.0,
    }
    assert "Female" not in json.dumps(card)  # nor in the profile text written with it
    assert card["age_years"] == 34.0
    state.set_privacy("age_group", enabled=False)
    (card,) = state.section("people")
    assert card["age_years"] is None and "30-39" not in json.dumps(card)
    # switched back on: the old value stays hidden until a new profile has it again
    state.set_privacy("gender", enabled=True)
    assert "Female" not in json.dumps(state.section("people"))
    # a profile made before the switch, arriving after it: hidden as well
    state.on_profile(old)
    assert "30-39" not in json.dumps(state.section("people"))
    state.set_privacy("age_group", enabled=True)
    state.on_profile(_profile(3))
    assert state.section("people")[0]["profile_text"] == "The person appears to be a Female."


def test_privacy_switches_are_pending_until_answered_and_read_when_the_profiler_appears():
    clock = Clock()
    state = ConsoleState(clock=clock)
    switches = PrivacySwitches(state, "/user_profiler_node", clock=clock)

    def privacy():
        return state.section("privacy")

    assert privacy()["node"] == {"name": "/user_profiler_node", "available": False, "error": ""}
    assert not switches.watch(False)
    assert privacy()["node"]["error"] == "waiting for /user_profiler_node"
    assert switches.watch(True)  # it appeared: read its switches, once
    assert not switches.watch(True)
    switches.read(None)  # the read failed: tried again at the next watch
    assert switches.watch(True)
    switches.read({"gender": False, "emotion": True})
    assert not switches.watch(True)
    assert privacy()["attributes"]["gender"]["enabled"] is False
    assert not switches.watch(False) and switches.watch(True)  # it came back: read again

    assert "does not answer" in switches.unreachable("age_group")
    assert privacy()["attributes"]["age_group"]["error"].endswith("(is it running?)")
    switches.asked("gender")
    assert privacy()["attributes"]["gender"]["pending"]
    switches.answered("gender", True, "")
    assert privacy()["attributes"]["gender"] == {"enabled": True, "pending": False, "error": ""}
    switches.asked("emotion")
    switches.answered("emotion", False, "refused by a rule")
    assert privacy()["attributes"]["emotion"]["error"] == "not changed: refused by a rule"
    assert privacy()["attributes"]["emotion"]["enabled"] is True
    switches.asked("ethnicity")
    clock.now += ANSWER_S + 0.1
    switches.watch(True)
    assert privacy()["attributes"]["ethnicity"] == {
        "enabled": None,
        "pending": False,
        "error": "/user_profiler_node did not answer",
    }


def test_the_switches_are_the_profilers_enable_parameters():
    assert switch_parameter("gender") == "enable.gender"
    assert attribute_of("enable.gender") == "gender"
    assert attribute_of("enable.nonsense") is None
    assert attribute_of("threshold.gender") is None


def test_health_levels_staleness_and_the_robot_connection():
    clock = Clock()
    state = ConsoleState(StateConfig(health_stale_s=3.0), clock=clock)

    def status(name, level, message):
        return StatusData(f"uservlm: /{name}", level, message, values={"said": "2"})

    state.on_diagnostics([status("naoqi_bridge_node", 1, "not connected")])
    health = state.section("health")
    assert health["nodes"][0]["level"] == "WARN"
    assert health["nodes"][0]["values"] == {"said": "2"}
    assert health["robot"]["state"] == "not_connected"
    state.on_diagnostics([status("naoqi_bridge_node", 0, "connected")])
    assert state.section("health")["robot"] == {"state": "connected", "detail": "connected"}
    clock.now += 4
    state.tick()
    assert state.section("health")["nodes"][0]["level"] == "STALE"
    assert state.section("health")["robot"]["state"] == "unknown"


def test_a_console_shows_the_health_of_its_own_namespace_only():
    def status(name, level):
        return StatusData(f"uservlm: {name}", level, name)

    everyone = [
        status("/robot1/naoqi_bridge_node", 0),  # sorts first: robot1's Pepper is up
        status("/robot1/camera_node", 0),
        status("/robot2/naoqi_bridge_node", 2),  # robot2's Pepper is not
        status("/robot2/camera_node", 0),
        status("/naoqi_bridge_node", 0),  # a robot without a namespace
        status("/robot2/lab/camera_node", 0),  # a namespace inside robot2's
    ]
    for namespace, names, robot in [
        ("/robot2", ["/robot2/camera_node", "/robot2/naoqi_bridge_node"], "not_connected"),
        ("/robot1", ["/robot1/camera_node", "/robot1/naoqi_bridge_node"], "connected"),
        ("/", ["/naoqi_bridge_node"], "connected"),
    ]:
        state = ConsoleState(clock=Clock(), namespace=namespace)
        state.on_diagnostics(everyone)
        health = state.section("health")
        assert [n["name"] for n in health["nodes"]] == names, namespace
        assert health["robot"]["state"] == robot, namespace


# -- console_node hands the console plain data, converted from the messages


def test_messages_become_the_plain_data_the_console_takes():
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
    from uservlm.msg import (
        AttributeEstimate,
        Response,
        SpeechEvent,
        StageTiming,
        Transcript,
        UserProfile,
    )

    from uservlm_ros.ros import message_data

    msg = UserProfile(track_id=3, person_id="kqzxt", visits=2, engagement_state=3, engaged=True)
    msg.gender = AttributeEstimate(name="gender", label="Female", known=True, confidence=0.75)
    profile = message_data.profile(msg)
    assert (profile.track_id, profile.person_id, profile.visits, profile.engaged) == (
        3,
        "kqzxt",
        2,
        True,
    )
    assert [a.name for a in profile.attributes] == list(labels.ATTRIBUTES)
    assert profile.attributes[labels.ATTRIBUTES.index("gender")] == AttributeData(
        "gender", "Female", True, "", 0.75
    )
    timing = StageTiming(stage="generate", duration_ms=12.5)
    response = message_data.response(Response(request_id="r1", final=True, timings=[timing]))
    assert response.final and response.timings == (StageTime("generate", 12.5),)
    transcript = Transcript(text="hello", dropped="noise")
    transcript.audio_start.sec, transcript.audio_start.nanosec = 5, 7
    assert message_data.transcript(transcript) == TranscriptData((5, 7), "hello", dropped="noise")
    status = DiagnosticStatus(name="/camera_node", level=DiagnosticStatus.WARN, message="slow")
    status.values = [KeyValue(key="fps", value="3")]
    (plain,) = message_data.statuses(DiagnosticArray(status=[status]))
    assert plain == StatusData("/camera_node", 1, "slow", "", {"fps": "3"})  # not rclpy's bytes
    event = message_data.speech_event(SpeechEvent(event="started", request_id="r1", part="full"))
    assert event == SpeechEventData("started", "r1", "full")
    # whatever the node hands it, the state shows
    state = ConsoleState(clock=Clock())
    state.on_profile(profile)
    state.on_diagnostics([plain])
    assert state.section("people")[0]["person_id"] == "kqzxt"
    assert state.section("health")["nodes"][0]["level"] == "WARN"


# -- camera frames


def test_throttle_and_jpeg():
    clock = Clock()
    throttle = FrameThrottle(10.0, clock=clock)
    let_through = 0
    for _ in range(90):  # 3 s of a 30 fps camera
        let_through += throttle.ready()
        clock.now += 1 / 30
    assert 29 <= let_through <= 31  # ~10 fps
    assert throttle.fps() <= 11
    frame = np.zeros((480, 1280, 3), np.uint8)
    jpeg = encode_jpeg(frame, max_width=640, quality=70)
    decoded = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (240, 640, 3)


def test_frames_wait_for_their_faces_unless_nobody_finds_faces():
    clock = Clock()
    frames: FramePairing[str] = FramePairing(keep=3, silent_s=1.0, clock=clock)
    assert not frames.faces_expected()  # no faces yet: frames are shown alone
    assert frames.take(_time(1)) is None
    assert frames.faces_expected()
    for sec in range(2, 7):
        frames.add(_time(sec), f"frame {sec}")
    assert frames.take(_time(3)) is None  # only the latest 3 were kept
    assert frames.take(_time(5)) == "frame 5"
    assert frames.take(_time(4)) is None  # older than faces that came: dropped
    assert frames.take(_time(6)) == "frame 6"
    clock.now += 1.5
    assert not frames.faces_expected()


# -- the web server


class FakeActions:
    def __init__(self):
        self.asked = []
        self.refuse = ""
        self.known = {"kqzxt", "abcde"}
        self.forgotten = []
        self.profiler_up = True

    def ask(self, question, track_id, person_id=""):
        if question == "fail":
            raise UservlmError("no responder serves /uservlm/respond")
        self.asked.append((question, track_id, person_id))
        return "req1"

    def set_privacy(self, attribute, enabled):
        future = concurrent.futures.Future()
        future.set_result(self.refuse)
        return future

    def forget(self, person_id):
        if not self.profiler_up:
            raise UservlmError("no profiler serves /uservlm/forget_persons (is it running?)")
        self.forgotten.append(person_id)
        gone = sorted(self.known) if not person_id else sorted({person_id} & self.known)
        self.known.difference_update(gone)
        future = concurrent.futures.Future()
        message = f"forgot {', '.join(gone)}" if gone else f"nobody is called {person_id}"
        future.set_result(Forgotten(bool(gone) or not person_id, len(gone), message))
        return future


@pytest.fixture
def serve():
    servers = []

    def start(host="127.0.0.1", token=None):
        state = ConsoleState()
        state.on_profile(_profile(3, engaged=True))
        actions = FakeActions()
        server = ConsoleServer(state, actions, host=host, port=0, token=token, log=lambda t: None)
        server.start()
        servers.append(server)
        return server, actions

    yield start
    for server in servers:
        server.stop()


def _run(coroutine):
    return asyncio.run(coroutine)


async def _request(method, url, **kwargs):
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, allow_redirects=False, **kwargs) as response,
    ):
        return response.status, await response.text(), response


def test_loopback_console_serves_the_page_and_refuses_foreign_hosts_and_sites(serve):
    server, actions = serve()
    base = f"http://127.0.0.1:{server.port}"
    status, text, response = _run(_request("GET", base + "/"))
    assert status == 200 and "uservlm console" in text
    assert response.headers["X-Frame-Options"] == "DENY"
    assert _run(_request("GET", base + "/static/app.js"))[0] == 200
    assert _run(_request("GET", base + "/static/../server.py"))[0] in (403, 404)
    # a page that rebinds its DNS name to 127.0.0.1
    status, text, _ = _run(_request("GET", base + "/", headers={"Host": "evil.example"}))
    assert status == 403 and "not this machine" in text
    ask = {"question": "Hello?", "track_id": 3}
    status, text, _ = _run(
        _request("POST", base + "/api/ask", json=ask, headers={"Origin": "http://evil.example"})
    )
    assert status == 403 and "cross-site" in text
    status, text, _ = _run(_request("POST", base + "/api/ask", data="question=Hello"))
    assert status == 415
    assert actions.asked == []
    status, text, _ = _run(_request("POST", base + "/api/ask", json=ask, headers={"Origin": base}))
    assert status == 200 and json.loads(text) == {"request_id": "req1"}
    assert actions.asked == [("Hello?", 3, "")]


def _raw_http(port, request: bytes) -> bytes:
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        connection.sendall(request)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    return answer


def test_a_loopback_console_refuses_a_request_without_host_header(serve):
    server, actions = serve()
    for request in (
        b"GET / HTTP/1.0\r\n\r\n",
        b"GET /api/state HTTP/1.0\r\n\r\n",
        b"GET / HTTP/1.0\r\nHost: \r\n\r\n",
        b"POST /api/ask HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: 19"
        b'\r\n\r\n{"question": "Hi?"}',
    ):
        status_line = _raw_http(server.port, request).split(b"\r\n", 1)[0]
        assert status_line.split()[1] == b"403", request
    assert actions.asked == []
    answer = _raw_http(server.port, b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
    assert answer.split()[1] == b"200"


def test_controls_answer_bad_input_with_one_clear_reason(serve):
    server, actions = serve()
    base = f"http://127.0.0.1:{server.port}"

    def post(path, body):
        status, text, _ = _run(_request("POST", base + path, json=body))
        return status, json.loads(text).get("error")

    assert post("/api/ask", {"question": "  "}) == (400, "type a question first")
    assert post("/api/ask", {"question": "x", "track_id": -1})[0] == 400
    assert post("/api/ask", {"question": "fail"}) == (503, "no responder serves /uservlm/respond")
    assert post("/api/ask", ["not", "an", "object"]) == (400, "expected a JSON object")
    assert post("/api/privacy", {"attribute": "shoe_size", "enabled": False})[0] == 400
    assert post("/api/privacy", {"attribute": "gender", "enabled": "no"})[0] == 400
    assert post("/api/privacy", {"attribute": "gender", "enabled": False}) == (200, None)
    actions.refuse = "Trying to set a read-only parameter: enable.gender."
    assert post("/api/privacy", {"attribute": "gender", "enabled": False}) == (
        409,
        "Trying to set a read-only parameter: enable.gender.",
    )
    status, text, _ = _run(
        _request("POST", base + "/api/ask", data=b"{", headers={"Content-Type": "application/json"})
    )
    assert status == 400 and "not valid JSON" in text


def test_ask_and_forget_check_types_and_ranges_with_one_line_each(serve):
    server, actions = serve()
    base = f"http://127.0.0.1:{server.port}"

    def post(path, raw: str):
        headers = {"Content-Type": "application/json"}
        status, text, _ = _run(_request("POST", base + path, data=raw.encode(), headers=headers))
        assert text.startswith("{"), text  # JSON, not a traceback page
        error = json.loads(text).get("error")
        assert error is None or ("\n" not in error and len(error) < 200), error
        return status, error

    big = str(2**70)
    for body in [
        '{"question": null}',
        '{"question": 1e999999}',
        '{"question": 42}',
        '{"question": ["Hi?"]}',
        '{"question": {"text": "Hi?"}}',
        '{"question": "\\ud800?"}',  # a lone surrogate: not text that can be sent
        '{"question": "Hi?", "track_id": ' + big + "}",
        '{"question": "Hi?", "track_id": 4294967296}',  # above uint32
        '{"question": "Hi?", "track_id": -1}',
        '{"question": "Hi?", "track_id": 1.5}',
        '{"question": "Hi?", "track_id": 1e999999}',
        '{"question": "Hi?", "track_id": "3"}',
        '{"question": "Hi?", "track_id": true}',
        '{"question": "Hi?", "track_id": null}',
        '{"question": "Hi?", "person_id": 7}',
        '{"question": "Hi?", "person_id": "a b"}',
        '{"question": "Hi?", "person_id": "\\ud800"}',
        '{"question": "Hi?", "person_id": ["kqzxt"]}',
        '{"question": "Hi?", "person_id": "' + "k" * 100 + '"}',
        '{"question": "Hi?", "person_id": "kqzxt", "track_id": 3}',  # one or the other
    ]:
        status, error = post("/api/ask", body)
        assert status == 400 and error, body
    assert actions.asked == []
    assert post("/api/ask", '{"question": "Hi?", "track_id": 4294967295}') == (200, None)
    assert post("/api/ask", '{"question": "Hi?", "person_id": "kqzxt"}') == (200, None)
    assert post("/api/ask", '{"question": "Hi?", "person_id": "", "track_id": 0}') == (200, None)
    assert actions.asked == [("Hi?", 4294967295, ""), ("Hi?", 0, "kqzxt"), ("Hi?", 0, "")]
    for body in [
        '{"person_id": null}',
        '{"person_id": ' + big + "}",
        '{"person_id": 1e999999}',
        '{"person_id": "\\ud800"}',
        '{"person_id": {"id": "kqzxt"}}',
    ]:
        status, error = post("/api/forget", body)
        assert status == 400 and error.startswith("person_id must be"), body
    assert actions.forgotten == []
    status, error = post("/api/privacy", '{"attribute": ["gender"], "enabled": false}')
    assert status == 400 and error.startswith("attribute must be")


def test_websocket_sends_every_section_then_changes_and_frames(serve):
    server, _ = serve()

    async def scenario():
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"http://127.0.0.1:{server.port}/ws") as ws:
                first = json.loads((await ws.receive(timeout=5)).data)
                assert {"people", "conversation", "health", "privacy", "camera"} <= set(first)
                assert first["people"][0]["track_id"] == 3
                assert server.clients == 1
                server.state.asked("r1", "Hi?", 0, "console")
                server.show_frame(b"\xff\xd8jpeg")
                seen_frame = seen_question = False
                while not (seen_frame and seen_question):
                    message = await ws.receive(timeout=5)
                    if message.type == aiohttp.WSMsgType.BINARY:
                        seen_frame = message.data == b"\xff\xd8jpeg"
                    else:
                        sections = json.loads(message.data)
                        keys = [e["key"] for e in sections.get("conversation", [])]
                        seen_question = seen_question or keys == ["r1"]
            bad = {"Origin": "http://evil.example"}
            with pytest.raises(aiohttp.WSServerHandshakeError):
                await session.ws_connect(f"http://127.0.0.1:{server.port}/ws", headers=bad)

    _run(scenario())


def test_a_non_loopback_console_needs_its_token_on_every_request(serve):
    with pytest.raises(UservlmError, match="needs a token"):
        ConsoleServer(ConsoleState(), FakeActions(), host="0.0.0.0", port=0)
    token = "t" * 24
    server, _ = serve("0.0.0.0", token)
    assert server.url == f"http://127.0.0.1:{server.port}/?token={token}"
    base = f"http://127.0.0.1:{server.port}"
    for path in ("/", "/static/app.js", "/api/state", "/ws"):
        status, text, _ = _run(_request("GET", base + path))
        assert status == 401 and "needs its token" in text, path
    assert _run(_request("GET", base + "/?token=wrong" + "x" * 20))[0] == 401
    status, _, response = _run(_request("GET", f"{base}/?token={token}"))
    assert status == 303 and response.headers["Location"] == "/"
    cookie = response.cookies[security.COOKIE]
    assert cookie.value == token and cookie["httponly"] and cookie["samesite"] == "Strict"
    cookies = {security.COOKIE: token}
    assert _run(_request("GET", base + "/api/state", cookies=cookies))[0] == 200
    bearer = {"Authorization": f"Bearer {token}"}
    status, text, _ = _run(_request("GET", base + "/api/state", headers=bearer))
    assert status == 200 and json.loads(text)["people"][0]["track_id"] == 3


def test_forget_endpoints_check_the_id_and_report_what_was_forgotten(serve):
    server, actions = serve()
    base = f"http://127.0.0.1:{server.port}"

    def post(path, body, **kwargs):
        status, text, _ = _run(_request("POST", base + path, json=body, **kwargs))
        return status, json.loads(text) if text.startswith("{") else text

    for bad in ({}, {"person_id": ""}, {"person_id": 7}, {"person_id": "a b"}):
        status, answer = post("/api/forget", bad)
        assert status == 400 and list(answer) == ["error"], bad
        assert "\n" not in answer["error"] and answer["error"].startswith("person_id must be")
    status, text = post(
        "/api/forget", {"person_id": "kqzxt"}, headers={"Origin": "http://evil.example"}
    )
    assert status == 403 and "cross-site" in text
    assert post("/api/forget", {"person_id": "kqzxt"}) == (
        200,
        {"forgotten": 1, "message": "forgot kqzxt"},
    )
    assert post("/api/forget", {"person_id": "kqzxt"}) == (
        404,
        {"error": "nobody is called kqzxt"},
    )
    # everyone only through its own endpoint (a missing id never means everyone)
    assert post("/api/forget_everyone", {}) == (200, {"forgotten": 1, "message": "forgot abcde"})
    assert actions.forgotten == ["kqzxt", "kqzxt", ""]
    actions.profiler_up = False
    assert post("/api/forget_everyone", {}) == (
        503,
        {"error": "no profiler serves /uservlm/forget_persons (is it running?)"},
    )


def test_forget_needs_the_token_on_a_non_loopback_console(serve):
    token = "t" * 24
    server, actions = serve("0.0.0.0", token)
    base = f"http://127.0.0.1:{server.port}"
    body = {"person_id": "kqzxt"}
    for path in ("/api/forget", "/api/forget_everyone"):
        status, text, _ = _run(_request("POST", base + path, json=body))
        assert status == 401 and "needs its token" in text
    assert actions.forgotten == []
    bearer = {"Authorization": f"Bearer {token}"}
    status, text, _ = _run(_request("POST", base + "/api/forget", json=body, headers=bearer))
    assert status == 200 and json.loads(text)["forgotten"] == 1


def test_a_busy_port_is_one_clear_error(serve):
    server, _ = serve()
    other = ConsoleServer(ConsoleState(), FakeActions(), port=server.port, log=lambda t: None)
    with pytest.raises(UservlmError, match=f"cannot listen on 127.0.0.1:{server.port}"):
        other.start()


# -- uservlm console: a bad start is one clear line and exit code 1


def test_uservlm_console_reports_a_busy_port_and_a_bad_token_file(processes, tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        console = processes.start_python(
            "console", "-m", "uservlm_ros.cli", "console", "--port", str(port)
        )
        assert console.popen.wait(60) == 1
    assert f"cannot listen on 127.0.0.1:{port}" in console.output()
    assert "Traceback" not in console.output()
    missing = tmp_path / "no-token"
    console = processes.start_python(
        "console_token",
        "-m",
        "uservlm_ros.cli",
        "console",
        "--host",
        "0.0.0.0",
        "--token-file",
        str(missing),
    )
    assert console.popen.wait(60) == 1
    assert f"token_file '{missing}' cannot be read" in console.output()
    assert "Traceback" not in console.output()


# -- console_node: the page's forget buttons reach the profiler's service


@pytest.mark.graph
def test_console_node_forgets_through_the_profilers_service(ros, processes):
    import re

    from harness import wait_until
    from uservlm.msg import UserProfile
    from uservlm.srv import ForgetPersons

    from uservlm_ros.ros import topics
    from uservlm_ros.ros.qos import LATCHED_QOS

    asked = []

    def serve(request, response):
        asked.append(request.person_id)
        response.success, response.forgotten = True, 1
        response.message = f"forgot {request.person_id or 'everyone'}"
        return response

    console = processes.start_python("console", "-m", "uservlm_ros.cli", "console", "--port", "0")
    console.wait_for_output("console at http://", timeout=60)
    base = re.search(r"console at (http://\S+)/", console.output()).group(1)
    # Before the profiler is up: one line, 503.
    status, text, _ = _run(_request("POST", base + "/api/forget_everyone", json={}))
    assert status == 503 and "no profiler serves /uservlm/forget_persons" in text

    ros.node.create_service(ForgetPersons, topics.FORGET_PERSONS, serve)
    profiles = ros.publisher(UserProfile, topics.PROFILE, LATCHED_QOS)
    ros.wait_for_subscribers(topics.PROFILE)
    profiles.publish(UserProfile(track_id=3, person_id="kqzxt", visits=2, observations=1))

    def card():
        people = json.loads(_run(_request("GET", base + "/api/state"))[1])["people"]
        return [(p["person_id"], p["visits"]) for p in people]

    wait_until(lambda: card() == [("kqzxt", 2)], 15, "kqzxt's card")

    def forget():
        return _run(_request("POST", base + "/api/forget", json={"person_id": "kqzxt"}))[:2]

    wait_until(lambda: forget()[0] == 200, 15, "the console to find the service")
    assert asked[-1] == "kqzxt" and card() == []  # the card goes with the person


# -- the token never reaches a log


@pytest.mark.graph
def test_the_token_is_never_logged_and_a_generated_one_only_printed(ros, processes, tmp_path):
    import re

    from harness import wait_until
    from rcl_interfaces.msg import Log
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    rosout_qos = QoSProfile(
        depth=1000,
        durability=DurabilityPolicy.TRANSIENT_LOCAL,
        reliability=ReliabilityPolicy.RELIABLE,
    )
    rosout = ros.subscribe(Log, "/rosout", rosout_qos)
    token = "from-a-file-0123456789abcdef"
    (tmp_path / "token").write_text(token + "\n")

    def start(name, *extra):
        log_dir = tmp_path / f"ros_log_{name}"
        console = processes.start_python(
            name,
            *("-m", "uservlm_ros.cli", "console", "--host", "0.0.0.0", "--port", "0", *extra),
            env={"ROS_LOG_DIR": str(log_dir)},
        )
        console.wait_for_output("console at http://", timeout=60)
        return console, log_dir

    def console_lines():
        return [m.msg for m in rosout.messages if "console at" in m.msg]

    def nowhere_logged(secret, log_dir):
        assert not [m.msg for m in rosout.messages if secret in m.msg]
        logged = "".join(f.read_text(errors="replace") for f in log_dir.rglob("*") if f.is_file())
        assert "console at" in logged and secret not in logged

    from_file, log_dir = start("console_file", "--token-file", str(tmp_path / "token"))
    wait_until(lambda: len(console_lines()) == 1, 15, "the console's address on /rosout")
    from_file.stop()
    assert token not in from_file.output()  # the person who wrote the file knows it
    nowhere_logged(token, log_dir)

    generated, log_dir = start("console_generated")
    wait_until(lambda: len(console_lines()) == 2, 15, "the second console's address on /rosout")
    printed = re.search(r"generated token: (http://\S+)\?token=(\S+)", generated.output())
    assert printed, generated.output()
    base, secret = printed.groups()
    assert _run(_request("GET", f"{base}api/state?token={secret}"))[0] == 200
    generated.stop()
    nowhere_logged(secret, log_dir)


# -- `--config`: the shipped deployments as docs/running.md lists them (kept here with the
# console's other first-use fixes of issue 22)


def test_an_unknown_config_lists_the_deployments_the_docs_list():
    import re
    from pathlib import Path

    from uservlm_ros.bringup.graph import resolve_config

    running = (Path(__file__).resolve().parents[1] / "docs" / "running.md").read_text()
    table = running.split("## Deployments", 1)[1].split("\n## ", 1)[0]
    documented = re.findall(r"^\| `config/(\w+)\.yaml` \|", table, re.MULTILINE)
    examples = re.findall(r"`config/(\w+)\.yaml`", table.split("example parameter files")[0])
    examples = sorted(set(examples) - set(documented))
    assert documented and examples == ["dialogue", "perception"], (documented, examples)
    with pytest.raises(ConfigError) as error:
        resolve_config("nosuch")
    message = str(error.value)
    assert "\n" not in message
    deployments = re.search(r"shipped deployment: ([\w, ]+)\)", message)
    assert deployments and deployments.group(1).split(", ") == sorted(documented), message
    assert "example parameter files: dialogue, perception" in message


@pytest.mark.graph
def test_uservlm_console_for_one_robot_of_two_on_the_domain(ros, processes):
    import re

    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
    from harness import wait_until

    from uservlm_ros.ros import topics

    console = processes.start_python(
        "console", "-m", "uservlm_ros.cli", "console", "--port", "0", "--namespace", "robot2"
    )
    console.wait_for_output("console at http://", timeout=60)
    base = re.search(r"console at (http://\S+)/", console.output()).group(1)
    diagnostics = ros.publisher(DiagnosticArray, topics.DIAGNOSTICS)
    # robot1's bridge sorts first and is connected; robot2's Pepper is not
    both = DiagnosticArray(
        status=[
            DiagnosticStatus(name=f"uservlm: /{robot}/{node}", level=level, message=robot)
            for robot, level in (
                ("robot1", DiagnosticStatus.OK),
                ("robot2", DiagnosticStatus.ERROR),
            )
            for node in ("naoqi_bridge_node", "camera_node")
        ]
    )

    def health():
        diagnostics.publish(both)
        return json.loads(_run(_request("GET", base + "/api/state"))[1])["health"]

    robot2 = {"/robot2/naoqi_bridge_node", "/robot2/camera_node", "/robot2/console_node"}
    wait_until(lambda: len(health()["nodes"]) >= 3, 15, "the console to hear /diagnostics")
    shown = health()
    assert {n["name"] for n in shown["nodes"]} == robot2
    assert shown["robot"] == {"state": "not_connected", "detail": "robot2"}
