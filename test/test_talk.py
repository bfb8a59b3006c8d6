"""Talking to the graph without rclpy code: `uservlm ask`, `uservlm who`, and `uservlm run`'s
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
    LEAVES,
    PROFILED,
    Person,
    Presence,
)
from uservlm_ros.sim.photos import frame_with_people

ASTRONAUT, HOPPER = 0, 1
# The astronaut near and central, Grace Hopper small at the left: the astronaut is engaged.
TWO_PEOPLE = [(ASTRONAUT, 220, 210, 120), (HOPPER, 90, 20, 150)]


def person(track_id, seen_at, engaged=False, text="The person appears to be a Female."):
    state = E.ENGAGED if engaged else E.DISENGAGED
    return Person(track_id, text, 0.8 if engaged else 0.2, state, engaged, 5, seen_at)


def kinds(changes):
    return [(c.kind, c.person.track_id) for c in changes]


def test_presence_reports_appear_engage_switch_and_leave():
    presence = Presence(expiry_s=2.0)
    assert presence.table() == ["nobody is here"]
    assert kinds(presence.update(person(1, 0.0))) == [(APPEARS, 1)]
    assert presence.update(person(1, 0.2)) == []  # nothing new
    assert kinds(presence.update(person(2, 0.3, engaged=True))) == [(APPEARS, 2), (ENGAGED, 2)]
    # The engagement moves to 1 before 2's next profile says it let go: one engaged at a time.
    assert kinds(presence.update(person(1, 0.5, engaged=True))) == [
        (DISENGAGED, 2),
        (ENGAGED, 1),
    ]
    assert kinds(presence.update(person(2, 0.6))) == []
    assert [p.engaged for p in presence.people] == [True, False]
    assert kinds(presence.update(person(2, 0.7, text="An older Female."))) == [(PROFILED, 2)]
    rows = presence.table()
    assert rows[0].startswith("* #1") and "engaged" in rows[0]
    assert rows[1].startswith("  #2") and "An older Female." in rows[1]
    assert kinds(presence.expire(2.6)) == [(LEAVES, 1)]
    assert kinds(presence.expire(2.8)) == [(LEAVES, 2)]
    lines = [c.line() for c in presence.update(person(3, 3.0, engaged=True, text=""))]
    assert lines == [
        "person #3 appears: (not profiled yet)",
        "person #3 is engaged (engagement 0.80)",
    ]
    with pytest.raises(ValueError):
        Presence(expiry_s=0)


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
        lambda: runner.output().count("[who is here] person #") >= 3, 120, "who-is-here lines"
    )
    wait_until(lambda: "is engaged" in runner.output(), 60, "an engaged person")
    output = runner.output()
    appeared = re.findall(r"\[who is here\] person #(\d+) appears", output)
    assert len(set(appeared)) == 2
    engaged = re.findall(r"\[who is here\] person #(\d+) is engaged", output)
    assert len(engaged) == 1

    # `uservlm who --once`: one table, two people, one engaged marker, on the engaged one.
    who = uservlm("who", "--once")
    assert who.returncode == 0, who.stderr
    rows = [line for line in who.stdout.splitlines() if re.match(r"^[* ] #\d+", line)]
    assert len(rows) == 2, who.stdout
    marked = [row for row in rows if row.startswith("*")]
    assert len(marked) == 1 and marked[0].startswith(f"* #{engaged[0]} ")
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
        assert got["for"] == f"#{track} ({how})" and not got["error"]
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
