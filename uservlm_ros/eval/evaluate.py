"""`uservlm eval BAG --labels LABELS`: perception (and optionally the responder) over a bag.

Deterministic: the camera frames are read from the bag in order and run through the same
detector, tracker, aligner, profiler and fusion the nodes use, with the nodes' default
parameters and the recorded camera stamps as the clock. Scores detection against labelled boxes,
each attribute (accuracy, macro-F1, confusion, abstentions), fairness across gender and ethnic
groups, per-stage latency, and answers against references (ROUGE-1, the User-VLM papers' metric).
Stage timings recorded in the bag by the live nodes are summarised too, and so is identity: the
person ids of the recorded profiles against the labelled names (`eval/identity.py`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from uservlm_ros.core import labels, metrics, prompt
from uservlm_ros.core.errors import UservlmError
from uservlm_ros.core.faces import Box
from uservlm_ros.core.fusion import FusedProfile, FusionConfig, ProfileFusion
from uservlm_ros.core.parameters import Param
from uservlm_ros.eval import identity
from uservlm_ros.eval.bags import COMPRESSED, frame_source, iter_bag, iter_frames
from uservlm_ros.eval.labels_file import Labels
from uservlm_ros.ros import topics


def _default(params: Sequence[Param], name: str) -> Any:
    return next(p.default for p in params if p.name == name)


@dataclass
class EvalOptions:
    detector: str = "blazeface_full"
    profiler: str = "attributes"
    profiler_path: str = ""
    responder: str = "none"  # none, fallback, paligemma
    vlm_path: str = ""
    iou_threshold: float = 0.5
    max_new_tokens: int = 100


@dataclass
class _Scores:
    truth: dict[str, list[str]] = field(default_factory=dict)
    predicted: dict[str, list[str]] = field(default_factory=dict)
    gender: dict[str, list[str]] = field(default_factory=dict)  # the face's true group
    ethnicity: dict[str, list[str]] = field(default_factory=dict)

    def add(self, attribute: str, truth: str, predicted: str, face: dict[str, str]) -> None:
        self.truth.setdefault(attribute, []).append(truth)
        self.predicted.setdefault(attribute, []).append(predicted)
        self.gender.setdefault(attribute, []).append(face.get("gender", labels.UNKNOWN))
        self.ethnicity.setdefault(attribute, []).append(face.get("ethnicity", labels.UNKNOWN))


def _build_perception(options: EvalOptions):
    from uservlm_ros.backends.face_detector import DETECTORS, DetectorOptions
    from uservlm_ros.backends.face_pipeline import FacePipeline, PipelineConfig
    from uservlm_ros.backends.profiler import PROFILERS, ProfilerOptions
    from uservlm_ros.nodes import user_profiler_node

    detector = DetectorOptions()  # face_crop_node's defaults, as PipelineConfig's
    pipeline = FacePipeline(
        DETECTORS.create(options.detector, detector),
        PipelineConfig(min_confidence=detector.min_confidence),
    )
    profiler = PROFILERS.create(options.profiler, ProfilerOptions(path=options.profiler_path))
    prof = user_profiler_node.PARAMS
    fusion = ProfileFusion(
        FusionConfig(
            half_life_s=_default(prof, "fusion.half_life_s"),
            expiry_s=_default(prof, "fusion.expiry_s"),
            thresholds={a: _default(prof, f"threshold.{a}") for a in labels.ATTRIBUTES},
        ),
        profiler.supported,
    )
    return pipeline, profiler, fusion


def _build_responder(options: EvalOptions):
    if options.responder == "none":
        return None
    if options.responder == "fallback":
        from uservlm_ros.backends.fallback_responder import FallbackResponder

        return FallbackResponder()
    from uservlm_ros.backends.paligemma import PaliGemmaBackend
    from uservlm_ros.backends.vlm import VlmOptions

    backend = PaliGemmaBackend(VlmOptions(path=options.vlm_path, warmup=False))
    backend.load()
    return backend


def evaluate(bag: Path, truth: Labels, options: EvalOptions | None = None) -> dict[str, Any]:
    """Run perception (and the responder) over the bag; return the metrics as plain data."""
    options = options or EvalOptions()
    check_labels_fit_the_bag(bag, truth)
    pipeline, profiler, fusion = _build_perception(options)
    responder = _build_responder(options)
    detection = metrics.DetectionCounts()
    scores = _Scores()
    stage_ms: dict[str, list[float]] = {}
    answers = []
    questions = {}
    for question in truth.questions:
        questions.setdefault(question.frame, []).append(question)
    frame_count = 0
    labelled_at: dict[float, tuple[int, int, int]] = {}  # camera stamp -> (index, width, height)
    for index, (stamp, rgb) in enumerate(iter_frames(bag, truth.camera_topic)):
        frame_count += 1
        if index in truth.frames:
            labelled_at[stamp] = (index, rgb.shape[1], rgb.shape[0])
        faces = pipeline.process(rgb, stamp)
        for stage, ms in faces.timings_ms.items():
            stage_ms.setdefault(stage, []).append(ms)
        started = time.perf_counter()
        estimates = profiler.estimate([f.crop.image for f in faces.faces], profiler.supported)
        stage_ms.setdefault("profile", []).append((time.perf_counter() - started) * 1e3)
        fusion.expire(stamp)
        profiles = {
            f.track_id: fusion.update(f.track_id, stamp, e)
            for f, e in zip(faces.faces, estimates, strict=True)
        }
        boxes = [f.detection.box for f in faces.faces]

        if index in truth.frames:
            labelled = truth.frames[index]
            pairs = metrics.match_boxes(boxes, [f.box for f in labelled], options.iou_threshold)
            detection.add(len(boxes), len(labelled), len(pairs))
            for found, wanted in pairs:
                profile = profiles[faces.faces[found].track_id]
                face = labelled[wanted].attributes
                for attribute, value in face.items():
                    scores.add(attribute, value, profile.attributes[attribute].label, face)

        for question in questions.get(index, []) if responder is not None else []:
            profile = _asker(question.box, boxes, faces.faces, profiles)
            answers.append(_answer(responder, question, rgb, profile, options))

    report = {
        "bag": str(bag),
        "frames": frame_count,
        "labelled_frames": len(truth.frames),
        "detector": options.detector,
        "profiler": profiler.model_id,
        "detection": {
            "iou_threshold": options.iou_threshold,
            # None (n/a) where nothing was found or nothing was there: 0/0 is not 0.
            "precision": detection.precision if _found(detection) else None,
            "recall": detection.recall if _present(detection) else None,
            "true_positives": detection.true_positives,
            "false_positives": detection.false_positives,
            "false_negatives": detection.false_negatives,
        },
        "attributes": _attribute_report(scores),
        "fairness": _fairness_report(scores),
        "identity": recorded_identity(bag, truth, labelled_at, options.iou_threshold),
        "latency_ms": {
            "offline": {s: metrics.percentiles(v) for s, v in stage_ms.items()},
            "recorded": recorded_latencies(bag),
        },
    }
    if truth.utterances:
        from uservlm_ros.eval.speech import Recogniser, evaluate_speech

        report["speech"] = evaluate_speech(bag, truth.utterances, truth.audio_topic, Recogniser())
    if responder is not None:
        report["answers"] = {
            "responder": options.responder,
            "n": len(answers),
            "rouge1": metrics.mean_dicts([a["rouge1"] for a in answers]),
            "items": answers,
        }
    return report


def recorded_identity(
    bag: Path, truth: Labels, labelled_at: dict[float, tuple[int, int, int]], threshold: float
) -> dict[str, Any]:
    """Identity scores of the profiles recorded in the bag: each profile stamped with a labelled
    frame's camera stamp is matched to that frame's labelled boxes by the IoU of its roi; its
    person id is the prediction, the face's `person` the truth. Scored only when the bag has
    profiles and the labels name someone (else just the two counts)."""
    from rclpy.serialization import deserialize_message
    from uservlm.msg import UserProfile

    from uservlm_ros.core.presence import person_id_of
    from uservlm_ros.ros.conversions import stamp_to_seconds

    named = sum(bool(face.person) for faces in truth.frames.values() for face in faces)
    predicted: dict[float, list[tuple[Box, str]]] = {}
    profiles = 0
    for message in iter_bag(bag, [topics.absolute(topics.PROFILE)]):
        profiles += 1
        msg = deserialize_message(message.data, UserProfile)
        stamp = stamp_to_seconds(msg.header.stamp)
        if stamp not in labelled_at:
            continue
        _, width, height = labelled_at[stamp]
        x0, y0, x1, y1 = (float(v) for v in msg.roi)
        person = person_id_of(msg.person_id, msg.track_id)
        predicted.setdefault(stamp, []).append(
            (Box(x0 * width, y0 * height, x1 * width, y1 * height), person)
        )
    counts = {"profiles": profiles, "named_faces": named}
    if not profiles or not named:
        return counts
    observations = []
    for stamp, found in predicted.items():
        index = labelled_at[stamp][0]
        labelled = [(face.box, face.person) for face in truth.frames[index]]
        observations += identity.match_observations(index, labelled, found, threshold)
    return counts | identity.identity_scores(observations).to_json()


def _found(counts: metrics.DetectionCounts) -> int:
    return counts.true_positives + counts.false_positives


def _present(counts: metrics.DetectionCounts) -> int:
    return counts.true_positives + counts.false_negatives


def check_labels_fit_the_bag(bag: Path, truth: Labels) -> None:
    """UservlmError naming the first labels entry whose frame the bag does not have."""
    if not truth.frames and not truth.questions:
        return  # e.g. labels of recorded speech only: no camera frame is needed
    _, count = frame_source(bag, truth.camera_topic)
    if count == 0:
        raise UservlmError(f"{bag} has no messages on the camera topic {truth.camera_topic}")
    last = f"the bag has {count} frames on {truth.camera_topic}, indices 0..{count - 1}"
    for index in sorted(truth.frames):
        if index >= count:
            raise UservlmError(f"{truth.frame_entry(index)}: index {index} is past the end; {last}")
    for n, question in enumerate(truth.questions):
        if not 0 <= question.frame < count:
            raise UservlmError(
                f"{truth.question_entry(n)}: frame {question.frame} is past the end; {last}"
            )


def _asker(box: Box | None, boxes: list[Box], faces, profiles) -> FusedProfile | None:
    """The profile of the face that asked (matching the question's box), if it was seen."""
    if box is None or not boxes:
        return None
    pairs = metrics.match_boxes(boxes, [box], threshold=0.3)
    return profiles[faces[pairs[0][0]].track_id] if pairs else None


def _answer(
    responder, question, rgb: np.ndarray, profile: FusedProfile | None, options: EvalOptions
) -> dict[str, Any]:
    from uservlm_ros.backends.vlm import GenerationRequest, UserContext

    known = {n: a.label for n, a in (profile.attributes.items() if profile else []) if a.known}
    text = prompt.build_prompt(
        question.question, question.mode, profile.profile_text if profile else ""
    )
    started = time.perf_counter()
    user = UserContext(question.question, known)
    result = responder.generate(GenerationRequest(rgb, text, options.max_new_tokens, user=user))
    return {
        "frame": question.frame,
        "question": question.question,
        "mode": question.mode,
        "profile_text": profile.profile_text if profile else "",
        "answer": result.text,
        "reference": question.reference,
        "responder": result.responder,
        "rouge1": metrics.rouge1(result.text, question.reference),
        "latency_ms": (time.perf_counter() - started) * 1e3,
    }


def _attribute_report(scores: _Scores) -> dict[str, Any]:
    report = {}
    for attribute, truth in scores.truth.items():
        predicted = scores.predicted[attribute]
        classes = list(labels.LABEL_SETS[attribute])
        report[attribute] = {
            "n": len(truth),
            "accuracy": metrics.accuracy(truth, predicted),  # an abstention counts as wrong
            "macro_f1": metrics.macro_f1(truth, predicted, classes),
            "abstained": sum(p == labels.UNKNOWN for p in predicted) / len(predicted),
            "labels": [*classes, labels.UNKNOWN],
            "confusion": metrics.confusion_matrix(truth, predicted, [*classes, labels.UNKNOWN]),
        }
    return report


def _fairness_report(scores: _Scores) -> dict[str, Any]:
    """Per attribute: accuracy within each true gender / ethnic group and the largest gap."""
    report = {}
    for attribute, truth in scores.truth.items():
        predicted = scores.predicted[attribute]
        entry = {}
        for group_name, groups in (("gender", scores.gender), ("ethnicity", scores.ethnicity)):
            labelled = [i for i, g in enumerate(groups[attribute]) if g != labels.UNKNOWN]
            by_group, gap = metrics.group_accuracy(
                [truth[i] for i in labelled],
                [predicted[i] for i in labelled],
                [groups[attribute][i] for i in labelled],
            )
            entry[f"accuracy_by_{group_name}"] = by_group
            # A gap needs two groups: with one, it is n/a (None), not a perfect 0.
            entry[f"largest_gap_{group_name}"] = gap if len(by_group) >= 2 else None
        report[attribute] = entry
    return report


def recorded_latencies(
    bag: Path, camera_topic: str = topics.absolute(topics.IMAGE)
) -> dict[str, Any]:
    """Stage timings the live nodes wrote into /uservlm/faces, /uservlm/user_profile and the final
    /uservlm/response messages, and camera -> profile: when the bag received a profile minus when
    it received the camera frame it was made from (matched by the camera stamp the profile
    carries), which holds for live sessions and for replayed ones alike."""
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import CompressedImage, Image
    from uservlm.msg import FaceArray, Response, UserProfile

    camera_topic, _ = frame_source(bag, camera_topic)  # raw or JPEG frames: same header
    types = {
        camera_topic: CompressedImage if camera_topic.endswith(COMPRESSED) else Image,
        topics.absolute(topics.FACES): FaceArray,
        topics.absolute(topics.PROFILE): UserProfile,
        topics.absolute(topics.RESPONSE): Response,
    }
    prefixes = {
        topics.absolute(topics.FACES): "faces",
        topics.absolute(topics.PROFILE): "profile",
        topics.absolute(topics.RESPONSE): "response",
    }
    stages: dict[str, list[float]] = {}
    frame_received: dict[tuple[int, int], int] = {}
    camera_to_profile = []
    for message in iter_bag(bag, list(types)):
        msg = deserialize_message(message.data, types[message.topic])
        stamp = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        if message.topic == camera_topic:
            frame_received.setdefault(stamp, message.timestamp_ns)
            continue
        if message.topic == topics.absolute(topics.RESPONSE) and not msg.final:
            continue  # the early part's timings are repeated in the final one
        prefix = prefixes[message.topic]
        for timing in msg.timings:
            stages.setdefault(f"{prefix}/{timing.stage}", []).append(timing.duration_ms)
        if message.topic == topics.absolute(topics.PROFILE) and stamp in frame_received:
            camera_to_profile.append((message.timestamp_ns - frame_received[stamp]) / 1e6)
    result = {stage: metrics.percentiles(values) for stage, values in sorted(stages.items())}
    if camera_to_profile:
        result["camera_to_profile"] = metrics.percentiles(camera_to_profile)
    return result
