"""Identity over time: does each real person keep one person id across their visits?

Pure functions (no ROS) used by `uservlm eval` and the demo report. An observation is
`(frame, truth, predicted)`: when (a frame index or a camera stamp), the real person's name
(None: the prediction matched no named face, a false one) and the predicted person id (None:
nobody was predicted for that real person).

IDF1, IDP and IDR follow Ristani, Solera, Zou, Cucchiara and Tomasi, "Performance Measures and a
Data Set for Multi-Target, Multi-Camera Tracking", ECCV 2016 workshops: each real person is
paired with at most one predicted id (and each id with at most one person) so that the number of
observations where the pair coincides, IDTP, is largest; every other truth observation is an
IDFN, every other prediction an IDFP. IDF1 = 2 IDTP / (2 IDTP + IDFP + IDFN).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from uservlm_ros.core import metrics
from uservlm_ros.core.faces import Box
from uservlm_ros.core.persons import is_anonymous

Observation = tuple[float, str | None, str | None]  # (frame, true name, predicted person id)


@dataclass(frozen=True)
class IdentityScores:
    observations: int  # real-person observations with a predicted person
    switches: int  # times a real person's predicted id changed between two observations
    switches_by_person: dict[str, int]
    idtp: int
    idfp: int
    idfn: int
    persons: dict[str, list[str]]  # real person -> the ids predicted for them, in order

    @property
    def idf1(self) -> float | None:
        total = 2 * self.idtp + self.idfp + self.idfn
        return 2 * self.idtp / total if total else None  # None: nothing to count, not 0

    @property
    def idp(self) -> float | None:
        return self.idtp / (self.idtp + self.idfp) if self.idtp + self.idfp else None

    @property
    def idr(self) -> float | None:
        return self.idtp / (self.idtp + self.idfn) if self.idtp + self.idfn else None

    @property
    def known_persons(self) -> dict[str, list[str]]:
        """Per real person, the identified (not anonymous) ids: more than one is a split."""
        return {name: [p for p in ids if not is_anonymous(p)] for name, ids in self.persons.items()}

    @property
    def persons_per_real_person(self) -> float | None:
        return float(np.mean([len(ids) for ids in self.persons.values()])) if self.persons else None

    @property
    def identified_per_real_person(self) -> float | None:
        known = self.known_persons.values()
        return float(np.mean([len(ids) for ids in known])) if self.persons else None

    def errors(self) -> list[str]:
        """Identity mistakes in words: a real person with several identified ids, or one
        identified id given to several real people."""
        found = [
            f"{name} got {len(ids)} person ids ({', '.join(ids)})"
            for name, ids in self.known_persons.items()
            if len(ids) > 1
        ]
        owners: dict[str, list[str]] = {}
        for name, ids in self.known_persons.items():
            for person in ids:
                owners.setdefault(person, []).append(name)
        found += [
            f"person id {person} was given to {' and '.join(names)}"
            for person, names in owners.items()
            if len(names) > 1
        ]
        return found

    def to_json(self) -> dict:
        return {
            "observations": self.observations,
            "switches": self.switches,
            "switches_by_person": self.switches_by_person,
            "idf1": self.idf1,
            "idp": self.idp,
            "idr": self.idr,
            "idtp": self.idtp,
            "idfp": self.idfp,
            "idfn": self.idfn,
            "persons": self.persons,
            "persons_per_real_person": self.persons_per_real_person,
            "known_persons": self.known_persons,
            "identified_per_real_person": self.identified_per_real_person,
        }


def identity_scores(observations: Iterable[Observation]) -> IdentityScores:
    """Identity switches, IDF1/IDP/IDR and the ids each real person got (module docstring)."""
    ordered = sorted(observations, key=lambda o: o[0])  # stable: ties keep their given order
    truth_count = Counter(t for _, t, _ in ordered if t is not None)
    predicted_count = Counter(p for _, _, p in ordered if p is not None)
    pairs = Counter((t, p) for _, t, p in ordered if t is not None and p is not None)
    switches: dict[str, int] = {name: 0 for name in truth_count}
    persons: dict[str, list[str]] = {name: [] for name in truth_count}
    last: dict[str, str] = {}
    for _, name, person in ordered:
        if name is None or person is None:
            continue
        if name in last and last[name] != person:
            switches[name] += 1
        last[name] = person
        if person not in persons[name]:
            persons[name].append(person)
    idtp = _best_pairing(pairs, list(truth_count), list(predicted_count))
    return IdentityScores(
        observations=sum(pairs.values()),
        switches=sum(switches.values()),
        switches_by_person=switches,
        idtp=idtp,
        idfp=sum(predicted_count.values()) - idtp,
        idfn=sum(truth_count.values()) - idtp,
        persons=persons,
    )


def _best_pairing(
    pairs: Counter[tuple[str, str]], names: Sequence[str], predicted: Sequence[str]
) -> int:
    """IDTP: the largest sum of co-occurrences over one-to-one pairings (Hungarian method)."""
    if not names or not predicted:
        return 0
    from scipy.optimize import linear_sum_assignment

    together = np.array([[pairs[(t, p)] for p in predicted] for t in names], dtype=float)
    rows, cols = linear_sum_assignment(together, maximize=True)
    return int(together[rows, cols].sum())


def match_observations(
    frame: float,
    labelled: Sequence[tuple[Box, str]],
    predicted: Sequence[tuple[Box, str]],
    threshold: float = 0.5,
) -> list[Observation]:
    """One frame's observations: predicted (box, person id) matched to labelled (box, name) by
    IoU (one to one, best first). A labelled face without a name ("") still takes its match but
    gives no observation; a prediction that matches no labelled face is a false one. A labelled
    face nobody predicted is left out: profiles are published for some frames only, so its
    absence says nothing about identity (detection recall scores missed faces)."""
    pairs = dict(
        (found, wanted)
        for found, wanted in metrics.match_boxes(
            [box for box, _ in predicted], [box for box, _ in labelled], threshold
        )
    )
    result: list[Observation] = []
    for k, (_, person) in enumerate(predicted):
        if k not in pairs:
            result.append((frame, None, person))
        elif name := labelled[pairs[k]][1]:
            result.append((frame, name, person))
    return result
