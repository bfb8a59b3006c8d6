"""Fusion of profiler estimates over time into one profile per person (or per track).

Each attribute's probabilities are averaged with weights that halve every `half_life_s` of
camera time, so a profile settles over a few frames yet follows a change (a new emotion). A weak
fused estimate, a disabled attribute (privacy) or one the profiler cannot estimate is reported
as unknown with the reason, never guessed. Profiles are kept under a key of the caller's: the
profiler node uses person ids (core/persons.py), so a profile continues across a person's visits.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from uservlm_ros.core import labels
from uservlm_ros.core.parameters import Param, config_of, setting

LOW_CONFIDENCE, DISABLED, NOT_SUPPORTED = "low_confidence", "disabled", "not_supported"


@dataclass(frozen=True)
class CropEstimate:
    """A profiler's output for one face crop: per attribute, probabilities in label order."""

    probabilities: Mapping[str, np.ndarray]
    age_years: float | None = None

    def __post_init__(self) -> None:
        for name, probs in self.probabilities.items():
            expected = len(labels.LABEL_SETS[name])
            if probs.shape != (expected,):
                raise ValueError(f"{name}: expected {expected} probabilities, got {probs.shape}")
            if not np.isfinite(probs).all() or (probs < 0).any():
                raise ValueError(f"{name}: probabilities must be finite and >= 0")
            if not math.isclose(float(probs.sum()), 1.0, abs_tol=1e-3):
                raise ValueError(f"{name}: probabilities sum to {probs.sum():.4f}, not 1")


@dataclass(frozen=True)
class AttributeResult:
    name: str
    label: str
    known: bool
    abstain_reason: str
    confidence: float
    label_names: tuple[str, ...]
    probabilities: tuple[float, ...]  # empty when disabled or not supported


@dataclass(frozen=True)
class FusedProfile:
    key: Hashable  # whose profile: the caller's key (a person id, a track id)
    stamp: float  # camera stamp of the latest observation, seconds
    attributes: dict[str, AttributeResult]
    age_years: float  # NaN when age is disabled or not estimated
    observations: int
    seconds_since_first_seen: float
    profile_text: str


# Minimum fused confidence per attribute (chance: 1/9 age groups, 1/2 genders, 1/7 groups and
# emotions): below it the attribute is reported unknown.
DEFAULT_THRESHOLDS = {"age_group": 0.3, "gender": 0.6, "ethnicity": 0.4, "emotion": 0.4}


@dataclass(frozen=True)
class FusionConfig:
    half_life_s: float = setting(1.0, min=0.01, max=3600.0, live=True)
    """An observation's weight in the fused profile halves every this many seconds"""
    # The profiler node also ends a face track after this long without its face.
    expiry_s: float = setting(5.0, min=0.1, max=86400.0, live=True)
    """A face track ends after this long without its face (its anonymous person and their profile
    with it; a known person is kept for persons.forget_after_s)"""
    thresholds: Mapping[str, float] = field(default_factory=dict)  # attribute -> min confidence
    enabled: frozenset[str] = frozenset(labels.ATTRIBUTES)

    def __post_init__(self) -> None:
        if self.half_life_s <= 0 or self.expiry_s <= 0:
            raise ValueError("half_life_s and expiry_s must be > 0")
        unknown = (set(self.thresholds) | set(self.enabled)) - set(labels.ATTRIBUTES)
        if unknown:
            raise ValueError(f"unknown attributes {sorted(unknown)}")


@dataclass
class _State:
    first_seen: float
    last_seen: float
    observations: int = 0
    sums: dict[str, np.ndarray] = field(default_factory=dict)  # decayed sums of probabilities
    age_sum: float = 0.0
    age_weight: float = 0.0
    seen: float = -math.inf  # latest camera stamp the face was seen at, profiled or not


class ProfileFusion:
    def __init__(self, config: FusionConfig, supported: Iterable[str]) -> None:
        self.config = config
        self.supported = frozenset(supported)
        self._profiles: dict[Hashable, _State] = {}

    @property
    def keys(self) -> list[Hashable]:
        return list(self._profiles)

    def update(self, key: Hashable, stamp: float, estimate: CropEstimate) -> FusedProfile:
        state = self._profiles.get(key)
        if state is None:
            state = self._profiles[key] = _State(first_seen=stamp, last_seen=stamp)
        # Older evidence loses half its weight per half-life (never gains from stamps going back).
        decay = 0.5 ** (max(stamp - state.last_seen, 0.0) / self.config.half_life_s)
        for name, probs in estimate.probabilities.items():
            if name in self.config.enabled:
                previous = state.sums.get(name, np.zeros_like(probs, dtype=np.float64))
                state.sums[name] = previous * decay + probs
        if estimate.age_years is not None and "age_group" in self.config.enabled:
            state.age_sum = state.age_sum * decay + estimate.age_years
            state.age_weight = state.age_weight * decay + 1.0
        state.last_seen = max(state.last_seen, stamp)
        state.seen = max(state.seen, stamp)
        state.observations += 1
        return self.profile(key)

    def profile(self, key: Hashable) -> FusedProfile:
        state = self._profiles[key]
        attributes = {name: self._attribute(name, state) for name in labels.ATTRIBUTES}
        known = {name: a.label for name, a in attributes.items() if a.known}
        return FusedProfile(
            key=key,
            stamp=state.last_seen,
            attributes=attributes,
            age_years=state.age_sum / state.age_weight if state.age_weight else math.nan,
            observations=state.observations,
            seconds_since_first_seen=state.last_seen - state.first_seen,
            profile_text=labels.profile_text(**known),
        )

    def _attribute(self, name: str, state: _State) -> AttributeResult:
        names = labels.LABEL_SETS[name]
        if name not in self.config.enabled:
            return AttributeResult(name, labels.UNKNOWN, False, DISABLED, 0.0, names, ())
        sums = state.sums.get(name)
        if name not in self.supported or sums is None:
            return AttributeResult(name, labels.UNKNOWN, False, NOT_SUPPORTED, 0.0, names, ())
        probs = sums / sums.sum()
        best = int(np.argmax(probs))
        confidence = float(probs[best])
        known = confidence >= self.config.thresholds.get(name, 0.0)
        return AttributeResult(
            name,
            names[best] if known else labels.UNKNOWN,
            known,
            "" if known else LOW_CONFIDENCE,
            confidence,
            names,
            tuple(float(p) for p in probs),
        )

    def current(self, key: Hashable) -> FusedProfile | None:
        """The fused profile under `key`, or None if it has none (never profiled, or expired)."""
        return self.profile(key) if key in self._profiles else None

    def touch(self, key: Hashable, stamp: float) -> None:
        """The face was seen at `stamp` but not profiled: keep its profile from expiring. The
        evidence keeps its weight (it decays only when a new observation is fused)."""
        state = self._profiles.get(key)
        if state is not None:
            state.seen = max(state.seen, stamp)

    def merge(self, source: Hashable, target: Hashable) -> None:
        """Move the evidence under `source` into `target` (an anonymous person identified as a
        known one): the older evidence decays to the newer one's time, as in `update`."""
        src = self._profiles.pop(source, None)
        if src is None:
            return
        dst = self._profiles.get(target)
        if dst is None:
            self._profiles[target] = src
            return
        newest = max(src.last_seen, dst.last_seen)
        src_decay = 0.5 ** ((newest - src.last_seen) / self.config.half_life_s)
        dst_decay = 0.5 ** ((newest - dst.last_seen) / self.config.half_life_s)
        for name in set(src.sums) | set(dst.sums):
            zero = np.zeros(len(labels.LABEL_SETS[name]))
            dst.sums[name] = (
                dst.sums.get(name, zero) * dst_decay + src.sums.get(name, zero) * src_decay
            )
        dst.age_sum = dst.age_sum * dst_decay + src.age_sum * src_decay
        dst.age_weight = dst.age_weight * dst_decay + src.age_weight * src_decay
        dst.first_seen = min(dst.first_seen, src.first_seen)
        dst.last_seen, dst.seen = newest, max(dst.seen, src.seen)
        dst.observations += src.observations

    def forget(self, key: Hashable) -> None:
        self._profiles.pop(key, None)

    def expire(self, now: float) -> list[Hashable]:
        """Drop profiles unseen for longer than expiry_s; returns their keys."""
        gone = [k for k, s in self._profiles.items() if now - s.seen > self.config.expiry_s]
        for key in gone:
            del self._profiles[key]
        return gone


# The privacy switches and confidence thresholds, per attribute, as node parameters.
ATTRIBUTE_PARAMS = [
    *[
        Param(
            f"enable.{name}",
            True,
            f"Estimate {name}; false reports it unknown (disabled)",
            live=True,
        )
        for name in labels.ATTRIBUTES
    ],
    *[
        Param(
            f"threshold.{name}",
            DEFAULT_THRESHOLDS[name],
            f"Minimum fused confidence of {name}; below it the label is unknown",
            min=0.0,
            max=1.0,
            live=True,
        )
        for name in labels.ATTRIBUTES
    ],
]


def enabled_attributes(values: Mapping[str, Any]) -> frozenset[str]:
    """The attributes whose `enable.<name>` parameter is on."""
    return frozenset(a for a in labels.ATTRIBUTES if values[f"enable.{a}"])


def fusion_config(values: Mapping[str, Any]) -> FusionConfig:
    """The fusion settings, thresholds and privacy switches from node parameter values."""
    return config_of(
        FusionConfig,
        "fusion",
        values,
        thresholds={a: values[f"threshold.{a}"] for a in labels.ATTRIBUTES},
        enabled=enabled_attributes(values),
    )
