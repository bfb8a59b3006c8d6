"""Whom an answer is for, and which part of the camera frame the model sees for them.

uservlm's extension of the papers (their demo has one user in front of a webcam and sends the
whole frame): with several people in view, the answer must be personalised for the one who
asked, and User-VLM personalises from the image, so the model must see that person.

Addressee of a question:

1. the person the question names: by track (a face track id) or by person (a UserProfile
   person_id, REP-155: stable across visits; their visible track is used). Not in view is an
   error, and so is a track and a person that are not the same one;
2. else the engaged person (core/engagement.py);
3. else the only visible person;
4. else the most engaged visible person, if their engagement score reaches the floor (nobody is
   ENGAGED, e.g. all in view only just arrived: the likeliest asker, rather than nobody);
5. else nobody: answered without a profile, and the Response says so (addressee "none"). That
   is: nobody in view, or several in view and none of them reaches the floor (all turned away or
   far: a personal answer for a bystander would be worse than a neutral one).

"Visible" = a profile stamped within `visible_s` of the camera's now (the responder uses the
profiler's `fusion.expiry_s` by default: the time after which the profiler forgets a track).

The asker's image: with two or more people visible, a head-and-shoulders crop of the asker
(their face box enlarged by the factors below, clamped to the frame); with one person (or none
to address), the whole frame, as the papers do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

REQUESTED, ENGAGED, ONLY_PERSON, MOST_ENGAGED, NONE = (
    "requested",
    "engaged",
    "only_person",
    "most_engaged",
    "none",
)

# Head and shoulders from a face box: FACE_WIDTHS face widths wide around the face centre,
# from ABOVE_FACE face heights above the face to BELOW_FACE face heights below it (shoulders
# and upper chest: clothes and posture are part of what User-VLM reads about a person).
FACE_WIDTHS = 3.0
ABOVE_FACE = 0.6
BELOW_FACE = 2.0
WHOLE_FRAME = (0.0, 0.0, 1.0, 1.0)
NO_IMAGE = (0.0, 0.0, 0.0, 0.0)


@dataclass(frozen=True)
class Seen:
    """A person as their latest profile shows them."""

    track_id: int
    roi: tuple[float, float, float, float]  # normalised face box of the latest observation
    engaged: bool
    stamp: float  # camera stamp of that observation, seconds
    engagement: float = 0.0  # engagement score 0..1
    person_id: str = ""  # the person the face belongs to ("" = not known)


@dataclass(frozen=True)
class Addressee:
    track_id: int  # 0 = nobody
    how: str  # REQUESTED, ENGAGED, ONLY_PERSON, MOST_ENGAGED or NONE
    error: str = ""  # set when the question cannot be answered for the requested person
    visible: tuple[int, ...] = ()  # every visible track, ascending
    person_id: str = ""  # the addressee's person ("" = nobody or not known)


def visible(people: Mapping[int, Seen], now: float, visible_s: float) -> list[Seen]:
    return sorted(
        (p for p in people.values() if now - p.stamp <= visible_s), key=lambda p: p.track_id
    )


def choose_addressee(
    requested: int,
    people: Mapping[int, Seen],
    now: float,
    visible_s: float,
    requested_person: str = "",
    floor: float = 0.0,
) -> Addressee:
    """See the module docstring: `requested` is a track id (0 = none), `requested_person` a
    person id ("" = none), `floor` the least engagement score of a most engaged addressee."""
    here = visible(people, now, visible_s)
    ids = tuple(p.track_id for p in here)

    def chosen(person: Seen, how: str) -> Addressee:
        return Addressee(person.track_id, how, visible=ids, person_id=person.person_id)

    def refused(error: str) -> Addressee:
        return Addressee(0, NONE, error, ids)

    if requested_person:
        track = next((p for p in here if p.person_id == requested_person), None)
        if track is None:
            persons = ", ".join(sorted({p.person_id for p in here if p.person_id})) or "none"
            return refused(f"person {requested_person} is not in view: in view are {persons}")
        if requested and requested != track.track_id:
            return refused(
                f"track {requested} is not person {requested_person}: that person is track "
                f"{track.track_id}"
            )
        return chosen(track, REQUESTED)
    if requested:
        if requested in ids:
            return chosen(people[requested], REQUESTED)
        tracked = ", ".join(str(i) for i in ids) if ids else "none"
        return refused(f"unknown track {requested}: tracked are {tracked}")
    engaged = [p for p in here if p.engaged]
    if engaged:  # two only while one profile still tells an old state: the newer one wins
        return chosen(max(engaged, key=lambda p: p.stamp), ENGAGED)
    if len(here) == 1:
        return chosen(here[0], ONLY_PERSON)
    likeliest = max(here, key=lambda p: p.engagement, default=None)  # ties: the lowest track
    if likeliest is not None and likeliest.engagement >= floor:
        return chosen(likeliest, MOST_ENGAGED)
    return Addressee(0, NONE, visible=ids)


def head_and_shoulders(
    face: tuple[float, float, float, float], width: int, height: int
) -> tuple[float, float, float, float]:
    """Normalised head-and-shoulders box for a normalised face box in a width x height frame,
    clamped to the frame (the factors are in pixels, so the crop keeps the face's shape)."""
    x0, y0, x1, y1 = face[0] * width, face[1] * height, face[2] * width, face[3] * height
    face_w, face_h = x1 - x0, y1 - y0
    cx = (x0 + x1) / 2
    box = (
        max(cx - FACE_WIDTHS * face_w / 2, 0.0) / width,
        max(y0 - ABOVE_FACE * face_h, 0.0) / height,
        min(cx + FACE_WIDTHS * face_w / 2, width) / width,
        min(y1 + BELOW_FACE * face_h, height) / height,
    )
    return tuple(float(v) for v in box)


def image_roi(
    addressee: Addressee, people: Mapping[int, Seen], mode: str, width: int, height: int
) -> tuple[float, float, float, float]:
    """What the model sees of the frame: `mode` "asker" crops the asker when two or more
    people are visible; otherwise (and in "frame" mode) the whole frame."""
    if mode == "frame" or len(addressee.visible) < 2 or addressee.track_id == 0:
        return WHOLE_FRAME
    return head_and_shoulders(people[addressee.track_id].roi, width, height)


def crop(image: np.ndarray, roi: tuple[float, float, float, float]) -> np.ndarray:
    """The part of an (h, w, 3) image a normalised roi covers (at least one pixel each way)."""
    height, width = image.shape[:2]
    x0 = min(round(roi[0] * width), width - 1)
    y0 = min(round(roi[1] * height), height - 1)
    x1 = max(round(roi[2] * width), x0 + 1)
    y1 = max(round(roi[3] * height), y0 + 1)
    return np.ascontiguousarray(image[y0:y1, x0:x1])
