"""The labels file of `uservlm eval`: ground truth for the camera frames of a bag.

JSON, one object:

    {
      "camera_topic": "/camera/image_raw",            # optional, this is the default
      "frames": [                                      # only labelled frames are scored
        {"index": 12,                                  # 0-based position among camera messages
         "faces": [{"box": [x0, y0, x1, y1],           # face box in image pixels
                    "person": "grace",                 # optional: who it is (scores identity)
                    "age_group": "30-39", "gender": "Female",
                    "ethnicity": "White", "emotion": "happy"}]}   # any subset of attributes
      ],
      "questions": [                                   # optional: answers scored with ROUGE-1
        {"frame": 20, "box": [x0, y0, x1, y1],         # asked at that frame by that face
         "question": "What should I wear today?",
         "reference": "A light jacket would suit you.",
         "mode": "user_aware"}                         # optional, default user_aware
      ],
      "audio_topic": "/uservlm/audio",                 # optional, this is the default
      "utterances": [                                  # optional: speech scored with WER
        {"start_s": 2.0, "end_s": 4.5,                 # seconds from the first audio message
         "text": "Can you tell me a joke?"}            # what was said (the reference)
      ]
    }

A frame listed with `"faces": []` says nobody is visible (detections there are false positives).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from uservlm_ros.core import labels, prompt
from uservlm_ros.core.errors import ConfigError
from uservlm_ros.core.faces import Box
from uservlm_ros.ros import topics


@dataclass(frozen=True)
class LabelledFace:
    box: Box
    attributes: dict[str, str]
    person: str = ""  # the real person's name, the same on every visit; "" = not labelled


@dataclass(frozen=True)
class LabelledQuestion:
    frame: int
    box: Box | None
    question: str
    reference: str
    mode: str = prompt.USER_AWARE


@dataclass(frozen=True)
class LabelledUtterance:
    start_s: float  # from the first audio message of the bag
    end_s: float
    text: str


DEFAULT_AUDIO_TOPIC = topics.absolute(topics.AUDIO)  # as recorded from the root namespace


@dataclass
class Labels:
    frames: dict[int, list[LabelledFace]] = field(default_factory=dict)
    questions: list[LabelledQuestion] = field(default_factory=list)
    camera_topic: str = topics.absolute(topics.IMAGE)
    utterances: list[LabelledUtterance] = field(default_factory=list)
    audio_topic: str = DEFAULT_AUDIO_TOPIC
    source: str = ""  # the file's name, for messages that name an entry
    frame_entries: dict[int, str] = field(default_factory=dict)  # index -> "file: frames[n]"

    def frame_entry(self, index: int) -> str:
        """How an error names the frames entry of `index`, e.g. `labels.json: frames[3]`."""
        return self.frame_entries.get(index, f"frames entry with index {index}")

    def question_entry(self, n: int) -> str:
        return f"{self.source}: questions[{n}]" if self.source else f"questions[{n}]"

    def to_json(self) -> dict:
        return {
            "camera_topic": self.camera_topic,
            "frames": [
                {"index": index, "faces": [_face_json(f) for f in faces]}
                for index, faces in sorted(self.frames.items())
            ],
            "questions": [
                {
                    "frame": q.frame,
                    "box": _corners(q.box) if q.box else None,
                    "question": q.question,
                    "reference": q.reference,
                    "mode": q.mode,
                }
                for q in self.questions
            ],
            "audio_topic": self.audio_topic,
            "utterances": [
                {"start_s": u.start_s, "end_s": u.end_s, "text": u.text} for u in self.utterances
            ],
        }

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=1) + "\n")


def _face_json(face: LabelledFace) -> dict:
    return {
        "box": _corners(face.box),
        **({"person": face.person} if face.person else {}),
        **face.attributes,
    }


def _corners(box: Box) -> list[float]:
    return [box.xmin, box.ymin, box.xmax, box.ymax]


def _box(value, where: str) -> Box:
    if (
        not isinstance(value, list)
        or len(value) != 4
        or not all(isinstance(v, int | float) for v in value)
        or value[0] >= value[2]
        or value[1] >= value[3]
    ):
        raise ConfigError(f"{where}: box must be [x0, y0, x1, y1] with x0 < x1 and y0 < y1")
    return Box(*(float(v) for v in value))


def load_labels(path: Path) -> Labels:
    """Read and validate a labels file; ConfigError says which entry is wrong."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ConfigError(f"cannot read labels {path}: {error}") from error
    result = Labels(
        camera_topic=data.get("camera_topic", topics.absolute(topics.IMAGE)),
        audio_topic=data.get("audio_topic", DEFAULT_AUDIO_TOPIC),
        source=path.name,
    )
    for n, frame in enumerate(data.get("frames", [])):
        where = f"{path.name}: frames[{n}]"
        index = frame.get("index")
        if not isinstance(index, int) or index < 0:
            raise ConfigError(f"{where}: index must be an integer >= 0")
        faces = []
        for k, face in enumerate(frame.get("faces", [])):
            person = face.get("person", "")
            if not isinstance(person, str):
                raise ConfigError(f"{where}.faces[{k}]: person must be a name (a string)")
            attributes = {key: value for key, value in face.items() if key not in ("box", "person")}
            for name, value in attributes.items():
                if name not in labels.LABEL_SETS:
                    raise ConfigError(f"{where}.faces[{k}]: unknown attribute {name!r}")
                value = labels.FAIRFACE_AGE_ALIASES.get(value, value)
                if value not in labels.LABEL_SETS[name]:
                    raise ConfigError(
                        f"{where}.faces[{k}]: {name} {value!r} is not one of "
                        f"{list(labels.LABEL_SETS[name])}"
                    )
                attributes[name] = value
            box = _box(face.get("box"), f"{where}.faces[{k}]")
            faces.append(LabelledFace(box, attributes, person.strip()))
        result.frames[index] = faces
        result.frame_entries[index] = where
    for n, item in enumerate(data.get("questions", [])):
        where = f"{path.name}: questions[{n}]"
        if not str(item.get("question", "")).strip() or "reference" not in item:
            raise ConfigError(f"{where}: needs a question and a reference")
        mode = item.get("mode", prompt.USER_AWARE)
        if mode not in prompt.MODES:
            raise ConfigError(f"{where}: mode must be one of {prompt.MODES}")
        box = _box(item["box"], where) if item.get("box") is not None else None
        result.questions.append(
            LabelledQuestion(
                int(item.get("frame", 0)), box, item["question"], item["reference"], mode
            )
        )
    for n, item in enumerate(data.get("utterances", [])):
        where = f"{path.name}: utterances[{n}]"
        start, end, text = item.get("start_s"), item.get("end_s"), item.get("text")
        numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (start, end))
        if not numbers or not 0 <= start < end or not isinstance(text, str):
            raise ConfigError(f"{where}: needs start_s < end_s (seconds >= 0) and a text")
        result.utterances.append(LabelledUtterance(float(start), float(end), text))
    return result
