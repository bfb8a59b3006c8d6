"""`uservlm eval`: the golden regression on a labelled bag, and record -> replay -> eval."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest
from harness import wait_until
from rclpy.serialization import deserialize_message
from uservlm.msg import UserProfile

from uservlm_ros.core.faces import Box
from uservlm_ros.demo.scene import make_scene, scene_labels
from uservlm_ros.eval.bags import iter_bag, record, replay, write_image_bag
from uservlm_ros.eval.evaluate import EvalOptions, evaluate
from uservlm_ros.eval.labels_file import LabelledQuestion, load_labels
from uservlm_ros.eval.report import write_eval_report

GOLDEN = Path(__file__).parent / "golden" / "eval_scene.json"
FRAMES = 24


@pytest.fixture(scope="module")
def scene_bag(tmp_path_factory):
    """24 frames of the two-person scene at 10 Hz, labelled every other frame, one question."""
    folder = tmp_path_factory.mktemp("scene")
    scene = make_scene(FRAMES)
    write_image_bag(
        folder / "bag", [(1_700_000_000.0 + i / 10, f.rgb) for i, f in enumerate(scene)]
    )
    labels = scene_labels(scene, every=2)
    labels.questions.append(
        LabelledQuestion(
            20,
            labels.frames[20][0].box,
            "Hello! How are you today?",
            "Hello! I am doing well, thank you for asking. How can I help you?",
        )
    )
    labels.save(folder / "labels.json")
    return folder


def summary(report: dict) -> dict:
    """The numbers the golden file pins (latencies vary from run to run and are left out)."""
    return {
        "frames": report["frames"],
        "detection": report["detection"],
        "attributes": {
            name: {k: entry[k] for k in ("n", "accuracy", "macro_f1", "abstained", "confusion")}
            for name, entry in report["attributes"].items()
        },
        "fairness": report["fairness"],
        "identity": report["identity"],  # images only: no profile to score
        "answers": {
            "n": report["answers"]["n"],
            "rouge1": report["answers"]["rouge1"],
            "texts": [a["answer"] for a in report["answers"]["items"]],
        },
    }


def test_eval_on_the_labelled_scene_matches_the_golden_metrics(scene_bag, tmp_path):
    report = evaluate(
        scene_bag / "bag", load_labels(scene_bag / "labels.json"), EvalOptions(responder="fallback")
    )
    got = summary(report)
    if os.environ.get("UPDATE_GOLDEN"):  # after a deliberate model or pipeline change
        GOLDEN.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
    expected = json.loads(GOLDEN.read_text())
    assert_close(json.loads(json.dumps(got, sort_keys=True)), expected)

    # The report is complete: every stage timed, files written.
    assert set(report["latency_ms"]["offline"]) == {"detect", "track", "crop", "profile"}
    assert report["latency_ms"]["offline"]["detect"]["n"] == FRAMES
    json_path, md_path = write_eval_report(report, tmp_path / "report")
    text = md_path.read_text()
    for section in ("## Detection", "## Attributes", "## Fairness", "## Latency", "## Answers"):
        assert section in text
    # Every labelled face in the scene is a White woman: one group, so no gap to report.
    assert "| age_group | Female 0.75 | n/a | White 0.75 | n/a |" in text
    assert (tmp_path / "report" / "confusion_gender.png").stat().st_size > 1000
    assert json.loads(json_path.read_text())["frames"] == FRAMES


def _labels_file(path: Path, frames: list[int], questions: list[int] = ()) -> Path:
    box = [10, 10, 60, 60]
    path.write_text(
        json.dumps(
            {
                "frames": [{"index": i, "faces": [{"box": box, "gender": "Male"}]} for i in frames],
                "questions": [
                    {"frame": q, "box": box, "question": "Hi?", "reference": "Hello."}
                    for q in questions
                ],
            }
        )
    )
    return path


@pytest.mark.parametrize(
    ("frames", "questions", "entry"),
    [
        ([0, FRAMES + 5, 3], [], r"labels\.json: frames\[1\]: index 29 is past the end"),
        ([0], [2, FRAMES], r"labels\.json: questions\[1\]: frame 24 is past the end"),
    ],
)
def test_labels_past_the_end_of_the_bag_are_an_error_naming_the_entry(
    scene_bag, tmp_path, frames, questions, entry
):
    from uservlm_ros.core.errors import UservlmError

    labels = load_labels(_labels_file(tmp_path / "labels.json", frames, questions))
    with pytest.raises(UservlmError, match=entry + rf".*{FRAMES} frames.*0\.\.{FRAMES - 1}"):
        evaluate(scene_bag / "bag", labels)


def test_no_labelled_frames_report_n_a_not_zero(scene_bag, tmp_path, capsys):
    from uservlm_ros.cli import main

    labels = _labels_file(tmp_path / "labels.json", [])
    out = tmp_path / "report"
    assert main(["eval", str(scene_bag / "bag"), "--labels", str(labels), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "detection: precision n/a recall n/a" in printed
    assert "attributes: n/a" in printed
    report = json.loads((out / "report.json").read_text())
    assert report["labelled_frames"] == 0
    assert report["detection"]["precision"] is None and report["detection"]["recall"] is None
    text = (out / "report.md").read_text()
    assert "precision **n/a**, recall **n/a**" in text
    assert "0.000" not in text


def test_a_fairness_gap_needs_two_groups():
    from uservlm_ros.eval.evaluate import _fairness_report, _Scores

    scores = _Scores()
    for truth, predicted, gender in [("20-29", "20-29", "Male"), ("20-29", "30-39", "Female")]:
        scores.add("age_group", truth, predicted, {"gender": gender})
    entry = _fairness_report(scores)["age_group"]
    assert entry["largest_gap_gender"] == 1.0
    assert entry["largest_gap_ethnicity"] is None  # no ethnicity labelled: no group at all


def assert_close(got, expected, path="report"):
    """Equal structure; floats equal to 1e-9 (the pipeline is deterministic)."""
    if isinstance(expected, dict):
        assert set(got) == set(expected), path
        for key in expected:
            assert_close(got[key], expected[key], f"{path}.{key}")
    elif isinstance(expected, list):
        assert len(got) == len(expected), path
        for i, (g, e) in enumerate(zip(got, expected, strict=True)):
            assert_close(g, e, f"{path}[{i}]")
    elif isinstance(expected, float):
        assert got == pytest.approx(expected, abs=1e-9), path
    else:
        assert got == expected, path


@pytest.mark.graph
def test_record_replay_eval_round_trip(ros, processes, scene_bag, tmp_path):
    """The scene bag played into live face_crop + profiler nodes, recorded, then evaluated."""
    processes.start_python("face_crop_node", "-m", "uservlm_ros.nodes.face_crop_node")
    # Every crop profiled: this checks that fusion accumulates over replayed stamps, not the
    # scheduler (which refreshes settled profiles once a second).
    processes.start_python(
        "user_profiler_node",
        "-m",
        "uservlm_ros.nodes.user_profiler_node",
        "--ros-args",
        "-p",
        "profile.schedule:=false",
    )
    ros.wait_for_publishers("/uservlm/faces", timeout=60)
    ros.wait_for_publishers("/uservlm/user_profile", timeout=60)
    recorded = tmp_path / "session"
    stop = threading.Event()
    recorder = threading.Thread(
        target=record,
        args=(recorded,),
        kwargs={
            "topics": ["/camera/image_raw", "/uservlm/faces", "/uservlm/user_profile"],
            "stop": stop,
            "progress": None,
        },
    )
    recorder.start()
    wait_until(lambda: ros.node.count_subscribers("/uservlm/faces") >= 1, 10, "the recorder")
    # On a loaded 2-core machine the nodes may still drop frames (by design they keep only the
    # newest), but most get through to be scored.
    played = replay(scene_bag / "bag", rate=1.0, progress=None)
    assert played == FRAMES
    time.sleep(1.5)
    stop.set()
    recorder.join(10)

    topics = [m.topic for m in iter_bag(recorded)]
    assert topics.count("/camera/image_raw/compressed") == FRAMES  # JPEG by default
    assert topics.count("/uservlm/faces") >= FRAMES // 2
    assert topics.count("/uservlm/user_profile") >= 2
    # Replayed frames carry 2023 stamps: fusion must still accumulate over the recording.
    profiles = [
        deserialize_message(m.data, UserProfile)
        for m in iter_bag(recorded, ["/uservlm/user_profile"])
    ]
    assert max(p.observations for p in profiles) >= 5
    report = evaluate(recorded, load_labels(scene_bag / "labels.json"))
    identity = report["identity"]  # the scene's labels name both people
    assert identity["profiles"] == len(profiles) and identity["named_faces"] > 0
    assert identity["identified_per_real_person"] <= 1.0  # nobody got two known ids
    assert report["detection"]["recall"] == 1.0
    assert report["detection"]["precision"] == 1.0
    live = report["latency_ms"]["recorded"]
    assert live["camera_to_profile"]["n"] >= 2
    assert 0 < live["camera_to_profile"]["p50"] < 5000
    assert live["faces/detect"]["n"] >= FRAMES // 2


# -- identity (eval/identity.py): hand-made sequences, IDF1 worked out by hand ------------------


def test_an_identity_switch_and_idf1_by_hand():
    from uservlm_ros.eval.identity import identity_scores

    ann = [(1, "ann", "p"), (2, "ann", "p"), (3, "ann", "q"), (4, "ann", "q")]
    bob = [(f, "bob", "r") for f in (1, 2, 3, 4)]
    scores = identity_scores(ann + bob)
    assert scores.switches == 1 and scores.switches_by_person == {"ann": 1, "bob": 0}
    # ann pairs with p (or q: 2 either way), bob with r (4): IDTP 6 of 8 truths, 8 predictions.
    assert (scores.idtp, scores.idfp, scores.idfn) == (6, 2, 2)
    assert scores.idf1 == pytest.approx(12 / 16) and scores.idp == scores.idr == 0.75
    assert scores.persons == {"ann": ["p", "q"], "bob": ["r"]}
    assert scores.persons_per_real_person == scores.identified_per_real_person == 1.5
    assert scores.errors() == ["ann got 2 person ids (p, q)"]


def test_idf1_pairs_people_and_ids_optimally_not_greedily():
    from uservlm_ros.eval.identity import identity_scores

    # ann: p 3 times, q twice; bob: p twice. Greedy (ann-p) finds 3; ann-q + bob-p finds 4.
    observations = [(f, "ann", "p") for f in (1, 2, 3)] + [(f, "ann", "q") for f in (4, 5)]
    observations += [(f, "bob", "p") for f in (6, 7)]
    scores = identity_scores(observations)
    assert scores.idtp == 4
    assert scores.idf1 == pytest.approx(2 * 4 / (7 + 7))
    assert "person id p was given to ann and bob" in scores.errors()


def test_missed_and_false_observations_count_and_order_follows_frames():
    from uservlm_ros.eval.identity import identity_scores

    scores = identity_scores([(3, "ann", "q"), (2, None, "x"), (1, "ann", None), (2, "ann", "p")])
    # Truths: ann at 1, 2, 3; predictions: x, p, q. Best pair ann-p (or q): IDTP 1.
    assert (scores.idtp, scores.idfp, scores.idfn) == (1, 2, 2)
    assert scores.idf1 == pytest.approx(2 / 6)
    assert scores.persons == {"ann": ["p", "q"]} and scores.switches == 1  # in frame order
    assert scores.observations == 2
    empty = identity_scores([])
    assert empty.idf1 is None and empty.persons_per_real_person is None


def test_anonymous_ids_are_not_a_split():
    from uservlm_ros.core.persons import anonymous_id
    from uservlm_ros.eval.identity import identity_scores

    scores = identity_scores([(1, "ann", anonymous_id(1)), (2, "ann", "kqzxt")])
    assert scores.switches == 1  # anonymous -> identified is a change of id
    assert scores.known_persons == {"ann": ["kqzxt"]} and scores.errors() == []
    assert scores.persons_per_real_person == 2 and scores.identified_per_real_person == 1


def test_profiles_are_matched_to_named_boxes_by_iou():
    from uservlm_ros.core.faces import Box
    from uservlm_ros.eval.identity import match_observations

    labelled = [(Box(0, 0, 10, 10), "ann"), (Box(50, 50, 60, 60), ""), (Box(90, 0, 99, 9), "bob")]
    predicted = [(Box(1, 1, 10, 10), "p"), (Box(50, 50, 60, 61), "q"), (Box(200, 0, 210, 9), "x")]
    # q covers an unnamed face: no observation, but no false one; bob was not predicted.
    assert match_observations(7, labelled, predicted, 0.5) == [(7, "ann", "p"), (7, None, "x")]


def test_labels_carry_person_names_and_old_files_still_load(tmp_path):
    from uservlm_ros.core.errors import ConfigError

    old = load_labels(_labels_file(tmp_path / "old.json", [0]))
    assert old.frames[0][0].person == "" and old.frames[0][0].attributes == {"gender": "Male"}
    face = {"box": [1, 2, 30, 40], "person": "grace", "gender": "Female"}
    path = tmp_path / "labels.json"
    path.write_text(json.dumps({"frames": [{"index": 3, "faces": [face]}]}))
    labels = load_labels(path)
    assert labels.frames[3][0].person == "grace"
    labels.save(tmp_path / "again.json")
    assert load_labels(tmp_path / "again.json").frames == labels.frames
    path.write_text(json.dumps({"frames": [{"index": 3, "faces": [face | {"person": 7}]}]}))
    with pytest.raises(ConfigError, match=r"frames\[0\]\.faces\[0\]: person must be a name"):
        load_labels(path)


def _profile(stamp: float, track_id: int, person_id: str, box, size=(640, 480)) -> UserProfile:
    from uservlm_ros.ros.conversions import seconds_to_stamp

    msg = UserProfile(track_id=track_id, person_id=person_id)
    msg.header.stamp = seconds_to_stamp(stamp)
    msg.roi = [box[0] / size[0], box[1] / size[1], box[2] / size[0], box[3] / size[1]]
    return msg


def test_eval_scores_identity_from_the_recorded_profiles(tmp_path):
    """A bag of 8 scene frames with the profiles a profiler might have published: the astronaut
    anonymous at first, then kqzxt; Grace Hopper (from frame 3) abcde, then, after a new
    track, fghij (a split); one false profile."""
    from uservlm_ros.demo.scene import make_scene
    from uservlm_ros.eval.labels_file import LabelledFace, Labels

    scene = make_scene(8)
    stamps = [1_700_000_000.0 + i / 10 for i in range(len(scene))]
    boxes = {(f.index, face.person): face.box for f in scene for face in f.faces}
    topic = "/uservlm/user_profile"
    astronaut = [(i, 1, "" if i == 0 else "kqzxt") for i in (0, 1, 2, 3, 4, 6, 7)]
    grace = [(3, 2, "abcde"), (4, 2, "abcde"), (6, 3, "fghij"), (7, 3, "fghij")]
    profiles = [
        (topic, stamps[i], _profile(stamps[i], t, p, boxes[i, "astronaut"]))
        for i, t, p in astronaut
    ]
    profiles += [
        (topic, stamps[i], _profile(stamps[i], t, p, boxes[i, "grace_hopper"])) for i, t, p in grace
    ]
    profiles.append((topic, stamps[1], _profile(stamps[1], 9, "zzzzz", (580, 440, 600, 460))))
    write_image_bag(
        tmp_path / "bag", [(s, f.rgb) for s, f in zip(stamps, scene, strict=True)], others=profiles
    )
    labels = Labels(
        frames={
            f.index: [LabelledFace(Box(*face.box), {}, face.person) for face in f.faces]
            for f in scene
        }
    )
    identity = evaluate(tmp_path / "bag", labels)["identity"]
    assert identity["profiles"] == 12 and identity["named_faces"] == 8 + 5
    assert identity["persons"] == {
        "astronaut": ["anonymous_person_f1", "kqzxt"],
        "grace_hopper": ["abcde", "fghij"],
    }
    assert identity["switches_by_person"] == {"astronaut": 1, "grace_hopper": 1}
    # Truths 7 + 4, predictions 12; astronaut-kqzxt (6) + grace-abcde (2): IDTP 8.
    assert (identity["idtp"], identity["idfp"], identity["idfn"]) == (8, 4, 3)
    assert identity["idf1"] == pytest.approx(16 / 23)
    report_dir = tmp_path / "report"
    _, md_path = write_eval_report(evaluate(tmp_path / "bag", labels), report_dir)
    text = md_path.read_text()
    assert "identity: IDF1 0.696 (IDP 0.667, IDR 0.727), 2 identity switches over 11" in text
    assert "| grace_hopper | 1 | abcde, fghij | 2 |" in text


def test_the_sample_bag_has_a_person_leave_for_longer_than_the_tracker_waits(tmp_path):
    import itertools

    from uservlm_ros.core.errors import UservlmError
    from uservlm_ros.demo.sample_bag import reid_timeout_s, write_sample

    count, away = write_sample(tmp_path, 100)
    assert count == 100 and away > reid_timeout_s()
    labels = load_labels(tmp_path / "labels.json")
    names = [[face.person for face in labels.frames[i]] for i in range(count)]
    assert names[0] == ["astronaut"] and names[-1] == ["astronaut", "grace_hopper"]
    present = [key for key, _ in itertools.groupby("grace_hopper" in n for n in names)]
    assert present == [False, True, False, True]  # walks in, out, and in again
    assert [q.frame for q in labels.questions] == [count - 1, count - 1]
    assert sum(1 for _ in iter_bag(tmp_path / "bag")) == count
    with pytest.raises(UservlmError, match="at least 12 frames, got 5"):
        write_sample(tmp_path / "short", 5)
