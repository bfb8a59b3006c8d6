"""`uservlm sample-bag`: a labelled bag of the demo scene in which a person leaves and returns.

The scene (`scene.py`) walks forward, back (Grace Hopper walks out), stays with the
astronaut alone, and forward again (Grace Hopper walks back in). Every face is labelled with its
attributes and its person's name, so `uservlm eval` scores identity on a recording of the graph
watching this bag (`uservlm replay` + `uservlm record`).
"""

from __future__ import annotations

from pathlib import Path

from uservlm_ros.core.errors import UservlmError
from uservlm_ros.core.faces import Box
from uservlm_ros.demo.scene import make_scene
from uservlm_ros.eval.labels_file import LabelledFace, LabelledQuestion, Labels

RATE_HZ = 10.0  # the bag's camera rate
START_S = 1.7e9  # first camera stamp
MIN_FRAMES = 12  # four passes of three frames: the second person is in the last frame


def sample_sequence(frames: int) -> list:
    """`frames` demo-scene frames (demo.scene.Frame): a quarter walking in, a quarter walking
    back out, the rest of a quarter with the first person alone, a quarter walking in again."""
    if frames < MIN_FRAMES:
        raise UservlmError(f"a sample bag needs at least {MIN_FRAMES} frames, got {frames}")
    scene = make_scene(frames // 4)
    alone = frames - 3 * len(scene)
    return [*scene, *reversed(scene), *[scene[0]] * alone, *scene]


def away_s(sequence: list) -> float:
    """The longest time the second person is out of view, seconds."""
    longest = gap = 0
    for frame in sequence:
        gap = 0 if len(frame.faces) > 1 else gap + 1
        longest = max(longest, gap)
    return longest / RATE_HZ


def sample_labels(sequence: list) -> Labels:
    """Every frame labelled (boxes, attributes, names), and two questions at the last frame."""
    labels = Labels(
        frames={
            position: [
                LabelledFace(Box(*face.box), dict(face.attributes), face.person)
                for face in frame.faces
            ]
            for position, frame in enumerate(sequence)
        }
    )
    last = labels.frames[len(sequence) - 1]  # both people are in the last frame
    labels.questions += [
        LabelledQuestion(
            len(sequence) - 1,
            last[0].box,
            "Hello! How are you today?",
            "Hello! I am doing well, thank you. How can I help you?",
        ),
        LabelledQuestion(
            len(sequence) - 1,
            last[1].box,
            "Can you tell me a joke?",
            "Why did the robot go on holiday? It needed to recharge its batteries.",
            "profile_prompt",
        ),
    ]
    return labels


def write_sample(output: Path, frames: int) -> tuple[int, float]:
    """output/bag and output/labels.json; returns the frame count and how long the second
    person is away, seconds."""
    from uservlm_ros.eval.bags import write_image_bag

    sequence = sample_sequence(frames)
    output.mkdir(parents=True, exist_ok=True)
    count = write_image_bag(
        output / "bag", [(START_S + i / RATE_HZ, f.rgb) for i, f in enumerate(sequence)]
    )
    sample_labels(sequence).save(output / "labels.json")
    return count, away_s(sequence)


def reid_timeout_s() -> float:
    """How long face_crop_node's tracker keeps a lost face's track by default: a person away
    longer comes back on a new track, and only identity can tell it is them."""
    from uservlm_ros.nodes.face_crop_node import PARAMS

    return next(p.default for p in PARAMS if p.name == "tracker.reid_timeout_s")
