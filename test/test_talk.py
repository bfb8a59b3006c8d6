"""Talking to the graph without rclpy code: `uservlm ask`, `who`, `forget`, and `uservlm run`'s
"who is here" lines; the presence bookkeeping behind them."""

from __future__ import annotations

import re
import subprocess
import sys

import cv2
import pytest
from harness import REPO, wait_until

from uservlm_ros.core import engagement as E
from uservlm_ros.core.presence import (
    APPEARS,
    DISENGAGED,
    ENGAGED,
    IDENTIFIED,
    LEAVES,
    PROFILED,
    RETURNS,
    Person,
    Presence,
    person_id_of,
    valid_person_id,
)
from uservlm_ros.sim.photos import frame_with_people

ASTRONAUT, HOPPER = 0, 1
# The astronaut near and central, Grace Hopper small at the left: the astronaut is engaged.
TWO_PEOPLE = [(ASTRONAUT, 220, 210, 120), (HOPPER, 90, 20, 150)]


def person(
    track_id,
    seen_at,
    engaged=False,
    text="The person appears to be a Female.",
    person_id="",
    visits=1,
):
    state = E.ENGAGED if engaged else E.DISENGAGED
    return Person(
        person_id_of(person_id, track_id),
        visits,
        track_id,
        text,
        0.8 if engaged else 0.2,
        state,
        engaged,
        5,
        seen_at,
    )


def kinds(changes):
    return [(c.kind, c.person.person_id) for c in changes]


A1, A2, A3 = (f"anonymous_person_f{t}" for t in (1, 2, 3))


def test_presence_reports_appear_engage_switch_and_leave():
    presence = Presence(expiry_s=2.0)
    assert presence.table(0.0) == ["nobody is here"]
    assert kinds(presence.update(person(1, 0.0))) == [(APPEARS, A1)]
    assert presence.update(person(1, 0.2)) == []  # nothing new
    assert kinds(presence.update(person(2, 0.3, engaged=True))) == [(APPEARS, A2), (ENGAGED, A2)]
    # The engagement moves to 1 before 2's next profile says it let go: one engaged at a time.
    assert kinds(presence.update(person(1, 0.5, engaged=True))) == [
        (DISENGAGED, A2),
        (ENGAGED, A1),
    ]
    assert kinds(presence.update(person(2, 0.6))) == []
    assert [p.engaged for p in presence.people] == [True, False]
    assert kinds(presence.update(person(2, 0.7, text="An older Female."))) == [(PROFILED, A2)]
    rows = presence.table(2.0)
    assert rows[0].startswith(f"* {A1} ") and " anonymous " in rows[0] and "engaged" in rows[0]
    assert " visit 1 " in rows[0] and " #1 " in rows[0] and "seen 2 s ago" in rows[0]
    assert rows[1].startswith(f"  {A2} ") and "An older Female." in rows[1]
    assert kinds(presence.expire(2.6)) == [(LEAVES, A1)]
    assert kinds(presence.expire(2.8)) == [(LEAVES, A2)]
    lines = [c.line() for c in presence.update(person(3, 3.0, engaged=True, text=""))]
    assert lines == [
        f"person {A3} (#3) came: (not profiled yet)",
        f"person {A3} (#3) is engaged (engagement 0.80)",
    ]
    with pytest.raises(ValueError):
        Presence(expiry_s=0)


def test_presence_keeps_persons_across_tracks_and_identification():
    presence = Presence(expiry_s=5.0)
    presence.update(person(1, 0.0, engaged=True))
    # Track 1 is identified as a new known person: the same row, under its known id.
    changes = presence.update(person(1, 0.5, engaged=True, person_id="kqzxt"))
    assert kinds(changes) == [(IDENTIFIED, "kqzxt")]  # still engaged: no engagement news
    assert changes[0].line() == f"person {A1} (#1) is now known as kqzxt"
    assert [p.person_id for p in presence.people] == ["kqzxt"]
    row = presence.table(0.5)[0]
    assert row.startswith("* kqzxt ") and " known " in row and "seen now" in row
    # kqzxt leaves; comes back on track 4, anonymous at first, then recognised: visit 2.
    assert kinds(presence.expire(6.0)) == [(LEAVES, "kqzxt")]
    presence.update(person(4, 7.0))
    changes = presence.update(person(4, 7.3, person_id="kqzxt", visits=2))
    assert kinds(changes) == [(RETURNS, "kqzxt")]
    assert changes[0].line() == "person kqzxt (#4) came back (visit 2, was anonymous_person_f4)"
    # Back again on track 6 before the old row expired: still one row, visit 3, track 6.
    changes = presence.update(person(6, 8.0, person_id="kqzxt", visits=3))
    assert kinds(changes) == [(RETURNS, "kqzxt")]
    assert changes[0].line() == "person kqzxt (#6) came back (visit 3)"
    assert [(p.person_id, p.track_id, p.visits) for p in presence.people] == [("kqzxt", 6, 3)]
    # kqzxt is forgotten while in view: the track's next profile is anonymous again
    changes = presence.update(person(6, 8.5))
    assert [c.line() for c in changes] == ["person kqzxt (#6) is now anonymous_person_f6"]
    assert [c.line() for c in presence.expire(20.0)] == ["person anonymous_person_f6 (#6) left"]


def test_person_ids_tools_accept():
    assert person_id_of("", 7) == "anonymous_person_f7"
    assert person_id_of("kqzxt", 7) == "kqzxt"
    for good in ("kqzxt", "anonymous_person_f12"):
        assert valid_person_id(good)
    for bad in ("", "3abc", "a b", "kq-zt", "x" * 65, "../etc"):
        assert not valid_person_id(bad)


def uservlm(*args, timeout=60, stdin=None):
    return subprocess.run(
        [sys.executable, "-m", "uservlm_ros.cli", *args],
        cwd=REPO,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_ask_without_a_graph_says_so_in_one_line():
    done = uservlm("ask", "Hello?", "--wait", "1")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "uservlm ask: no responder answers on the Respond action within 1 s "
        "(is the graph running? `uservlm run`)"
    ]
    bad = uservlm("ask", "Hello?", "--track", "-3")
    assert bad.returncode == 2 and "--track must be >= 0" in bad.stderr
    both = uservlm("ask", "Hello?", "--track", "2", "--person", "kqzxt")
    assert both.returncode == 2
    assert both.stderr.splitlines() == ["uservlm ask: give --track or --person, not both"]
    odd = uservlm("ask", "Hello?", "--person", "no such id")
    assert odd.returncode == 2
    assert odd.stderr.splitlines() == ["uservlm ask: --person 'no such id' is not a person id"]


def test_who_and_forget_without_a_graph_say_so():
    who = uservlm("who", "--once", "--wait", "0.5")
    assert who.returncode == 1, who.stderr
    assert who.stderr.splitlines() == [
        "uservlm who: no profiler publishes /uservlm/user_profile within 0.5 s "
        "(is the graph running? `uservlm run`)"
    ]
    forget = uservlm("forget", "kqzxt", "--wait", "1")
    assert forget.returncode == 1
    assert forget.stderr.splitlines() == [
        "uservlm forget: no profiler serves /uservlm/forget_persons within 1 s "
        "(is the graph running? `uservlm run`)"
    ]
    for args in ([], ["kqzxt", "--all"]):
        usage = uservlm("forget", *args)
        assert usage.returncode == 2
        assert usage.stderr.splitlines() == ["uservlm forget: give one PERSON_ID or --all"]
    bad = uservlm("forget", "kq zxt")
    assert bad.returncode == 2 and bad.stderr.splitlines() == [
        "uservlm forget: 'kq zxt' is not a person id"
    ]


def test_forget_calls_the_profilers_service(ros):
    """A fake profiler in the test process serves ForgetPersons; it knows kqzxt and abcde."""
    from uservlm.srv import ForgetPersons

    from uservlm_ros.ros import topics

    known = {"kqzxt", "abcde"}
    asked = []

    def serve(request, response):
        asked.append(request.person_id)
        gone = sorted(known) if not request.person_id else sorted({request.person_id} & known)
        known.difference_update(gone)
        response.success = bool(gone) or not request.person_id
        response.forgotten = len(gone)
        response.message = f"forgot {', '.join(gone)}" if gone else "nobody by that id"
        return response

    ros.node.create_service(ForgetPersons, topics.FORGET_PERSONS, serve)
    one = uservlm("forget", "kqzxt")
    assert one.returncode == 0, one.stderr
    assert one.stdout.splitlines() == ["forget kqzxt: forgot kqzxt"]
    again = uservlm("forget", "kqzxt")
    assert again.returncode == 1
    assert again.stderr.splitlines() == ["uservlm forget: nobody by that id"]
    everyone = uservlm("forget", "--all")
    assert everyone.returncode == 0, everyone.stderr
    assert everyone.stdout.splitlines() == ["forget everyone: forgot abcde"]
    assert asked == ["kqzxt", "kqzxt", ""]


@pytest.fixture
def two_people_folder(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    frame = cv2.cvtColor(frame_with_people(TWO_PEOPLE), cv2.COLOR_RGB2BGR)
    for index in range(3):
        cv2.imwrite(str(folder / f"{index:03d}.png"), frame)
    return folder


def start_graph(processes, folder, *extra):
    return processes.start_python(
        "uservlm_run",
        "-m",
        "uservlm_ros.cli",
        "run",
        "--config",
        "demo",
        "--set=camera_node.source=folder",
        f"--set=camera_node.path={folder}",
        "--set=camera_node.loop=true",
        "--set=naoqi_bridge_node.backend=naoqi_driver",
        "--set=user_profiler_node.engagement.min_dwell_s=0.5",
        *extra,
    )


@pytest.mark.graph
def test_run_who_and_ask_against_a_running_graph(ros, processes, two_people_folder):
    runner = start_graph(processes, two_people_folder)
    # `uservlm run` says who is here: both people appear, the near central one is engaged.
    wait_until(
        lambda: runner.output().count("[who is here] person ") >= 3, 120, "who-is-here lines"
    )
    wait_until(lambda: "is engaged" in runner.output(), 60, "an engaged person")
    output = runner.output()
    appeared = re.findall(r"\[who is here\] person \S+ \(#(\d+)\) came", output)
    assert len(set(appeared)) == 2
    engaged = re.findall(r"\[who is here\] person \S+ \(#(\d+)\) is engaged", output)
    assert len(engaged) == 1

    # `uservlm who --once`: one table, a row per person, one engaged marker, on the engaged one.
    who = uservlm("who", "--once")
    assert who.returncode == 0, who.stderr
    row = re.compile(r"^[* ] ([a-z][a-z0-9_]+) +(anonymous|known) +visit \d+ +#(\d+) +seen ")
    rows = [line for line in who.stdout.splitlines() if row.match(line)]
    assert len(rows) == 2, who.stdout
    marked = [line for line in rows if line.startswith("*")]
    assert len(marked) == 1 and row.match(marked[0]).group(3) == engaged[0]
    partner_id = row.match(marked[0]).group(1)
    assert "engagement" in marked[0] and "The person appears to be" in marked[0]
    assert who.stdout.splitlines()[0].endswith("2 here")

    # `uservlm ask "..."`: the streamed text, then the answer with responder, gesture, timings.
    asked = uservlm("ask", "Hello! How are you today?")
    assert asked.returncode == 0, asked.stdout + asked.stderr
    lines = asked.stdout.splitlines()
    answer = next(line for line in lines if line.startswith("answer: "))
    assert len(answer) > len("answer: ") + 5
    assert "responder fallback-template, mode user_aware" in asked.stdout
    assert re.search(r"gesture \S+, sentiment (positive|neutral|negative)", asked.stdout)
    assert re.search(r"timings: .*total \d+ ms", asked.stdout)
    streamed = lines[0]  # the partial texts, printed as they came, on one line
    assert streamed == answer[len("answer: ") :]

    # Without a question: one question per line from stdin; errors are answers too (exit 1).
    many = uservlm("ask", "--mode", "profile_prompt", stdin="Can you tell me a joke?\n\n \n")
    assert many.returncode == 0 and many.stdout.count("answer: ") == 1
    assert "mode profile_prompt" in many.stdout
    bad = uservlm("ask", "--adapter", "nonexistent", stdin="Hi?\nHello?\n")
    assert bad.returncode == 1
    assert bad.stdout.count("error: unknown adapter 'nonexistent'") == 2
    # `--person ID`: answered for that person, on their current track.
    named = _parse_answer(uservlm("ask", "--person", partner_id, "What do you see?").stdout)
    assert named["for"].startswith(f"person {partner_id} (#{engaged[0]}, "), named

    # Two askers through the whole graph (camera -> faces -> profiles + engagement ->
    # responder): the transcript of the closing note. Each answer is for its asker and the
    # model saw the region around that asker's face.
    from uservlm.msg import UserProfile

    from uservlm_ros.ros import topics
    from uservlm_ros.ros.qos import LATCHED_QOS

    profiles = ros.subscribe(UserProfile, topics.PROFILE, LATCHED_QOS)
    wait_until(lambda: len({p.track_id for p in profiles.messages}) >= 2, 30, "two profiles")
    latest = {p.track_id: p for p in profiles.messages}
    partner = int(engaged[0])
    other = next(t for t in latest if t != partner)
    transcript = []
    for asker, args in (
        (f"engaged person #{partner} (no track given)", ["What do you see?"]),
        (f"person #{other} (--track {other})", ["--track", str(other), "What do you see?"]),
        ("someone naming track 9999", ["--track", "9999", "What do you see?"]),
    ):
        done = uservlm("ask", *args)
        got = _parse_answer(done.stdout)
        transcript.append((asker, got))
    (_, first), (_, second), (_, third) = transcript
    for got, track, how in ((first, partner, "engaged"), (second, other, "requested")):
        assert re.fullmatch(rf"person \S+ \(#{track}, {how}\)", got["for"]), got
        assert not got["error"]
        face = latest[track].roi.tolist()
        roi = got["image_roi"]
        assert roi[0] <= face[0] and roi[1] <= face[1] and face[2] <= roi[2] and face[3] <= roi[3]
        away = latest[partner if track == other else other].roi.tolist()
        assert not (roi[0] <= away[0] and away[2] <= roi[2])  # the other face is not in it
    assert third["error"].startswith("unknown track 9999: tracked are ")
    print("\n--- two-person transcript (uservlm ask against uservlm run --config demo) ---")
    for track, profile in sorted(latest.items()):
        face = ", ".join(f"{v:.2f}" for v in profile.roi)
        print(f"#{track}: {profile.profile_text} face [{face}] engaged={profile.engaged}")
    for asker, got in transcript:
        print(f"asked by {asker}: 'What do you see?'")
        print(f"  answered for {got['for']}; image_roi [{got['roi_text']}]")
        print(f"  error: {got['error']}" if got["error"] else f"  answer: {got['answer']}")


def _parse_answer(stdout: str) -> dict:
    """The fields of `uservlm ask`'s final answer block."""
    lines = stdout.splitlines()
    got = {"answer": "", "error": ""}
    for line in lines:
        if line.startswith("answer: "):
            got["answer"] = line[len("answer: ") :]
        elif line.startswith("error: "):
            got["error"] = line[len("error: ") :]
        elif line.startswith("  for "):
            got["for"] = line[len("  for ") :].split(";")[0]
        elif line.startswith("  image_roi ["):
            got["roi_text"] = line[len("  image_roi [") : -1]
            got["image_roi"] = [float(v) for v in got["roi_text"].split(", ")]
    return got


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["who", "--expiry", "-1", "--once"], "argument --expiry: must be > 0, got -1"),
        (["who", "--wait", "-2"], "argument --wait: must be >= 0, got -2"),
        (["ask", "Hi", "--mode", "loud"], "argument --mode: invalid choice: 'loud'"),
        (["ask", "Hi", "--adapter", "no such"], "argument --adapter: 'no such' is not an adapter"),
        (["ask", "  "], "argument question: the question is empty"),
        (["ask", "Hi", "--max-new-tokens", "-5"], "argument --max-new-tokens: must be >= 0"),
        (["ask", "Hi", "--timeout", "0"], "argument --timeout: must be > 0, got 0"),
    ],
)
def test_bad_who_and_ask_options_are_a_usage_error_before_any_round_trip(args, reason):
    done = uservlm(*args)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[0].startswith(f"usage: uservlm {args[0]}")
    assert reason in lines[-1] and lines[-1].startswith(f"uservlm {args[0]}: error:")


def test_one_wording_for_whom_an_answer_is_for():
    from uservlm.msg import Response

    from uservlm_ros.cli import _format_response
    from uservlm_ros.core.presence import answer_for

    assert answer_for("kqzxt", 3) == "person kqzxt (#3)"
    assert answer_for("kqzxt", 1, "engaged") == "person kqzxt (#1, engaged)"
    assert answer_for("", 0, "none") == answer_for("", 0) == "nobody"
    lines = _format_response(Response(text="Hi", track_id=0, addressee="none", mode="user_aware"))
    assert lines[1].startswith("  for nobody; ")
    engaged = Response(text="Hi", track_id=1, person_id="kqzxt", addressee="engaged")
    lines = _format_response(engaged)
    assert lines[1].startswith("  for person kqzxt (#1, engaged); ")
    # `who` and `run` name a person the same way
    assert person(3, 0.0, person_id="kqzxt").name == "person kqzxt (#3)"


def test_the_streamed_answer_line_is_never_left_cut():
    """The final Response can overtake the last partials (another DDS topic), and executor
    threads can swap two partials: the streamed line still ends as the whole answer."""
    import io

    from uservlm_ros.cli import StreamedLine

    answer = "Hello, nice to see you! How can I help you?"
    out = io.StringIO()
    line = StreamedLine(out)
    for text in ("Hello,", "Hello, nice to see you! How", "Hello, nice to see you!"):
        line.partial(text)
    line.end(answer)
    assert out.getvalue() == answer + "\n"
    # a revised text starts a line of its own; nothing streamed: nothing printed
    out = io.StringIO()
    line = StreamedLine(out)
    line.end(answer)
    assert out.getvalue() == ""


def test_stale_feedback_is_not_passed_on():
    from uservlm.action import Respond

    from uservlm_ros.ros.respond_client import Partial, RespondCall

    call = RespondCall("r1", "Hi?", 0)
    for text, tokens in (("Hello,", 2), ("Hello, nice", 4), ("Hello,", 2), ("Hello, nice to", 5)):
        call._feedback(Respond.Feedback(partial_text=text, tokens_generated=tokens))
    events = []
    while not call._events.empty():
        events.append(call._events.get())
    assert [e.text for e in events if isinstance(e, Partial)] == [
        "Hello,",
        "Hello, nice",
        "Hello, nice to",
    ]
