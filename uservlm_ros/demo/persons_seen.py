"""Who the demo saw: persons (not tracks) from the profiles it received, checked against the
scene's real people.

Pure functions over the sequence of profiles (`Sighting`, one per UserProfile message), so the
report's logic is tested without running the demo. A profile belongs to a real person of the
scene when its roi overlaps one of that person's face boxes in the scene (the two people stay
far apart, so the best overlap over the whole scene tells them apart).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from uservlm_ros.core.faces import Box, iou
from uservlm_ros.core.persons import is_anonymous
from uservlm_ros.core.presence import person_id_of
from uservlm_ros.eval.identity import identity_scores

MIN_IOU = 0.3  # a roi overlapping no scene face this much belongs to nobody of the scene


@dataclass(frozen=True)
class Sighting:
    """What the report keeps of one UserProfile message."""

    stamp: float  # camera stamp, seconds
    track_id: int
    person_id: str  # "" from a profiler that publishes no person ids: one person per track
    visits: int
    roi: tuple[float, float, float, float]  # normalised xmin, ymin, xmax, ymax

    @property
    def person(self) -> str:
        return person_id_of(self.person_id, self.track_id)


@dataclass
class PersonSeen:
    person_id: str
    visits: int
    first_seen: float  # camera stamp, seconds
    last_seen: float
    tracks: list[int] = field(default_factory=list)
    profile: object = None  # the latest profile


def scene_faces(scene: Iterable, width: int, height: int) -> list[tuple[str, Box]]:
    """Every face of the scene (demo.scene.Frame) as (real person, normalised box)."""
    return [
        (face.person, Box(x0 / width, y0 / height, x1 / width, y1 / height))
        for frame in scene
        for face in frame.faces
        for x0, y0, x1, y1 in [face.box]
    ]


def real_person(roi: Sequence[float], faces: Sequence[tuple[str, Box]]) -> str | None:
    """The scene's person whose face box overlaps the roi most (None: nobody, a false face)."""
    box = Box(*(float(v) for v in roi))
    best = max(faces, key=lambda face: iou(box, face[1]), default=None)
    return best[0] if best is not None and iou(box, best[1]) >= MIN_IOU else None


def persons_seen(
    sightings: Sequence[Sighting], latest: Mapping[int, object] | None = None
) -> list[PersonSeen]:
    """The persons, in order of first sighting, each with the latest profile (from `latest`,
    track -> UserProfile) of their latest track. A track's anonymous person that was later
    identified is no person of its own: it was that known person all along."""
    ordered = sorted(sightings, key=lambda s: s.stamp)
    identified: dict[int, str] = {}  # track -> the known person it first became
    for s in ordered:
        if not is_anonymous(s.person):
            identified.setdefault(s.track_id, s.person)
    persons: dict[str, PersonSeen] = {}
    for s in ordered:
        person = identified.get(s.track_id, s.person) if is_anonymous(s.person) else s.person
        seen = persons.setdefault(person, PersonSeen(person, 1, s.stamp, s.stamp))
        seen.visits = max(seen.visits, s.visits)
        seen.last_seen = s.stamp
        if s.track_id in seen.tracks:
            seen.tracks.remove(s.track_id)
        seen.tracks.append(s.track_id)  # the latest last
    for seen in persons.values():
        seen.profile = (latest or {}).get(seen.tracks[-1])
    return list(persons.values())


def identity_errors(sightings: Sequence[Sighting], faces: Sequence[tuple[str, Box]]) -> list[str]:
    """A real person with more than one identified person id, or one id given to two real
    people. Anonymous ids do not count (a track is anonymous until identified, and a profiler
    without identity names one person per track), so this holds without identity too."""
    return identity_scores(
        (s.stamp, real_person(s.roi, faces), s.person) for s in sightings
    ).errors()


def describe(profile) -> str:
    """A UserProfile's estimates in words, with confidences or why one is unknown."""
    parts = []
    for estimate in (profile.age_group, profile.gender, profile.ethnicity, profile.emotion):
        if estimate.known:
            parts.append(f"{estimate.name} {estimate.label} ({estimate.confidence:.2f})")
        else:
            parts.append(f"{estimate.name} unknown ({estimate.abstain_reason})")
    return ", ".join(parts) + f"; {profile.observations} observations fused"


def persons_section(persons: Sequence[PersonSeen], errors: Sequence[str]) -> list[str]:
    """The report's "Who was seen": one row per person, then the identity check."""
    lines = ["## Who was seen", ""]
    if not persons:
        return [*lines, "Nobody was profiled.", ""]
    origin = min(p.first_seen for p in persons)
    lines += [
        "A person keeps their id when they leave and come back (each return is a visit, on a "
        f"new track); times are camera seconds from the first profile. {len(persons)} "
        f"person(s):",
        "",
        "| person | visits | first seen | last seen | tracks | profile |",
        "|---|---|---|---|---|---|",
    ]
    for p in persons:
        profile = p.profile
        text = (
            f"{profile.profile_text or '(nothing known)'} -- {describe(profile)}; model "
            f"`{profile.model_id}`"
            if profile is not None
            else "-"
        )
        lines.append(
            f"| {p.person_id} | {p.visits} | {p.first_seen - origin:.1f} s | "
            f"{p.last_seen - origin:.1f} s | {', '.join(f'#{t}' for t in p.tracks)} | {text} |"
        )
    lines.append("")
    if all(is_anonymous(p.person_id) for p in persons):
        lines.append("No person was identified (identity off or not published): one per track.")
    elif errors:
        lines.append(f"Identity check FAILED: {'; '.join(errors)}.")
    else:
        lines.append("Identity check passed: each real person of the scene kept one person id.")
    return [*lines, ""]
