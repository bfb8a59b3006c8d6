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
    assert report["detection"]["recall"] == 1.0
    assert report["detection"]["precision"] == 1.0
    live = report["latency_ms"]["recorded"]
    assert live["camera_to_profile"]["n"] >= 2
    assert 0 < live["camera_to_profile"]["p50"] < 5000
    assert live["faces/detect"]["n"] >= FRAMES // 2
