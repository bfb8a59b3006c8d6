"""Whom the robot is engaged with: a per-track engagement score and state, from face cues only.

uservlm's adaptation of ROS4HRI's hri_engagement (Webb & Lemaignan) to what a single 2-D camera
gives: no 3-D gaze or body pose, so the "mutual gaze" term is approximated by how central the
face is in the image (robot -> person) times how frontal it is (person -> robot: nose between the
eyes and between the ears, little roll), and distance comes from the face size. hri_engagement's
states and hysteresis are kept; its 10 s vote window is replaced by an exponentially smoothed
score plus a minimum dwell per state, which reacts faster on a robot that answers questions.

Per track and camera frame:

    instant = proximity * centrality * frontal * time_in_view (+ speech boost), clipped to 0..1
    score   = instant smoothed over `smoothing_s` of camera time

Each factor is 1 over the whole range of an attending person (within personal distance, near
the image centre, frontal up to the asymmetries real frontal detections show) and falls only
beyond it, so the product is not eroded by several small costs (a product of four factors
below 1 kept a person obviously attending under the threshold), while one clearly failed cue
(far away, at the frame's edge, turned away) still rules a person out. Calibrated on real
detections of package photos: bench/engagement.py, table in docs/ros_api.md.

States (the UserProfile ENGAGEMENT_* values):

    UNKNOWN      -> DISENGAGED   after MIN_OBSERVATIONS frames of the track
    DISENGAGED   -> ENGAGING     score >= engage_threshold
    ENGAGING     -> DISENGAGED   score <  disengage_threshold
    ENGAGING     -> ENGAGED      ENGAGING for min_dwell_s and nobody holds the engagement
                                 (or it beats the holder by switch_margin for switch_dwell_s)
    ENGAGED      -> DISENGAGING  score <  disengage_threshold
    DISENGAGING  -> ENGAGED      score >= engage_threshold
    DISENGAGING  -> DISENGAGED   DISENGAGING for min_dwell_s

At most one track is ENGAGED or DISENGAGING (the robot's partner; `engaged` is true for it).
Pure Python: the user_profiler node feeds it FaceArrays; a speech node may call `heard_speech`.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from uservlm_ros.core.faces import LEFT_EAR, LEFT_EYE, NOSE_TIP, RIGHT_EAR, RIGHT_EYE
from uservlm_ros.core.parameters import setting

# The UserProfile.ENGAGEMENT_* values (REP-155 EngagementLevel numbering).
UNKNOWN, DISENGAGED, ENGAGING, ENGAGED, DISENGAGING = range(5)
STATE_NAMES = ("unknown", "disengaged", "engaging", "engaged", "disengaging")
PARTNER_STATES = (ENGAGED, DISENGAGING)

# Frames of a new track before its state is judged (one detection may be a passer-by's blur).
MIN_OBSERVATIONS = 3
# Height of an adult face box as BlazeFace draws it (brow to chin, a little forehead), metres:
# with the camera's vertical field of view it turns the box height into a distance.
FACE_HEIGHT_M = 0.22
# Centrality: no cost while the face centre is within this share of the half-width from the
# image centre (0.4: about +-12 degrees on Pepper's 57.2 degree wide top camera, where someone
# facing the camera also faces the robot); beyond it the factor falls linearly to 0 at the
# left/right edge (a face cut by the frame's border is beside the robot, not in front of it).
CENTRAL_HALF_WIDTH = 0.4
# Frontal pose from landmarks: the nose's sideways offset from the eyes' midpoint (in eye
# distances) and the nose-to-ear asymmetry, each costing nothing up to its *_FRONTAL value and
# counting as fully turned at its *_TURNED value (the frontal factor is 1 minus their mean).
# Measured with BlazeFace on the package photos (bench/engagement.py): real frontal faces up to
# 2.5 m read nose offsets up to 0.10 and ear asymmetries up to 0.17 (faces are not symmetric and
# small faces' landmarks are coarse); a head turned about 45 degrees reads 0.19-0.42 and
# 0.48-0.92, one turned about 30 degrees 0.07-0.26 and 0.22-0.59.
NOSE_OFFSET_FRONTAL = 0.12
NOSE_OFFSET_TURNED = 0.3
EAR_ASYMMETRY_FRONTAL = 0.2
EAR_ASYMMETRY_TURNED = 0.5
# Head roll up to ROLL_FREE_DEG costs nothing (a tilted head still listens); beyond it the
# frontal score falls linearly to 0 at ROLL_LIMIT_DEG.
ROLL_FREE_DEG = 15.0
ROLL_LIMIT_DEG = 75.0
# Frontal score when the detector gave no usable landmarks: neither attending nor turned away.
FRONTAL_UNKNOWN = 0.5
# Time in view: a person who just appeared counts this share; the full weight after
# `time_in_view_s` (someone walking past is less likely to talk to the robot than one who stays).
NEW_FACE_WEIGHT = 0.5
# Having just spoken adds this much to the instant score, fading linearly over SPEECH_BOOST_S.
SPEECH_BOOST = 0.35
SPEECH_BOOST_S = 4.0


@dataclass(frozen=True)
class EngagementConfig:
    # Proximity is 1 up to personal_distance_m (the far end of Hall's personal space, 1.2 m:
    # whoever stands that close is within conversation range) and reaches 0 at max_distance_m
    # (hri_engagement's 4 m, about the far end of Hall's social space).
    personal_distance_m: float = setting(1.2, min=0.0, max=20.0)
    """Distance (estimated from the face size) up to which the proximity cue is 1 (Hall's
    personal space), metres; it falls linearly to 0 at engagement.max_distance_m, which must
    be larger"""
    max_distance_m: float = setting(4.0, min=0.5, max=20.0)
    """Distance (estimated from the face size) at which the proximity cue reaches 0 (linearly
    from engagement.personal_distance_m), metres"""
    camera_vfov_deg: float = setting(44.3, min=10.0, max=170.0)
    """Camera's vertical field of view, degrees, to turn face size into distance (Pepper's top
    camera: 44.3)"""
    smoothing_s: float = setting(0.5, min=0.05, max=30.0)
    """Time constant of the engagement score's smoothing, seconds of camera time"""
    time_in_view_s: float = setting(2.0, min=0.01, max=60.0)
    """A new face counts half; its full weight after this long in view, seconds"""
    engage_threshold: float = setting(0.5, min=0.0, max=1.0)
    """Score at or above which a person becomes ENGAGING (or an ENGAGED/DISENGAGING one ENGAGED
    again); must exceed engagement.disengage_threshold"""
    disengage_threshold: float = setting(0.3, min=0.0, max=1.0)
    """Score below which an ENGAGING person becomes DISENGAGED and the engaged one DISENGAGING"""
    min_dwell_s: float = setting(1.0, min=0.0, max=60.0)
    """Time ENGAGING before becoming engaged, and DISENGAGING before letting go, seconds"""
    switch_margin: float = setting(0.15, min=0.0, max=1.0)
    """How much higher another person's score must be to take over the engagement"""
    switch_dwell_s: float = setting(2.0, min=0.0, max=60.0)
    """How long the other person must stay that much higher before the engagement switches,
    seconds"""
    forget_after_s: float = 5.0  # a track unseen this long is dropped (the profiler's expiry)

    def __post_init__(self) -> None:
        if not 0.0 <= self.disengage_threshold < self.engage_threshold <= 1.0:
            raise ValueError(
                "need 0 <= disengage_threshold < engage_threshold <= 1, got "
                f"{self.disengage_threshold} and {self.engage_threshold}"
            )
        if not 0.0 < self.camera_vfov_deg < 180.0:
            raise ValueError(f"camera_vfov_deg must be in (0, 180), got {self.camera_vfov_deg}")
        positive = ("max_distance_m", "smoothing_s", "time_in_view_s", "forget_after_s")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")
        if not 0.0 <= self.personal_distance_m < self.max_distance_m:
            raise ValueError(
                "need 0 <= personal_distance_m < max_distance_m, got "
                f"{self.personal_distance_m} and {self.max_distance_m}"
            )
        if self.min_dwell_s < 0 or self.switch_dwell_s < 0 or self.switch_margin < 0:
            raise ValueError("min_dwell_s, switch_dwell_s and switch_margin must be >= 0")


@dataclass(frozen=True)
class FaceObservation:
    """One face of one camera frame, as perception reports it."""

    track_id: int
    roi: tuple[float, float, float, float]  # normalised xmin, ymin, xmax, ymax (0..1)
    landmarks: np.ndarray | None = None  # (6, 2) pixels, Face.LANDMARK_* order, NaN = missing
    roll_deg: float = 0.0

    def __post_init__(self) -> None:
        xmin, ymin, xmax, ymax = self.roi
        if not all(math.isfinite(v) for v in self.roi) or xmax <= xmin or ymax <= ymin:
            raise ValueError(
                f"face box of track {self.track_id} is empty or not finite: {self.roi}"
            )


@dataclass(frozen=True)
class Cues:
    """The factors of one instant score, each 0..1 (speech: the boost added)."""

    proximity: float
    centrality: float
    frontal: float
    time_in_view: float
    speech: float

    def instant(self) -> float:
        attention = self.proximity * self.centrality * self.frontal * self.time_in_view
        return min(1.0, max(0.0, attention + self.speech))


@dataclass(frozen=True)
class EngagementStatus:
    track_id: int
    score: float  # smoothed engagement, 0..1
    state: int  # UNKNOWN .. DISENGAGING
    roi: tuple[float, float, float, float]  # of the latest observation
    cues: Cues  # of the latest frame
    visible: bool  # in the latest frame

    @property
    def engaged(self) -> bool:
        return self.state in PARTNER_STATES

    @property
    def state_name(self) -> str:
        return STATE_NAMES[self.state]


@dataclass
class _Track:
    first_seen: float
    last_seen: float
    roi: tuple[float, float, float, float]
    cues: Cues
    score: float
    observations: int = 0
    state: int = UNKNOWN
    state_since: float = 0.0
    better_since: float | None = None  # since when it beats the partner by switch_margin
    spoke_at: float | None = None
    visible: bool = True


def distance_m(face_height: float, camera_vfov_deg: float) -> float:
    """Distance of a face whose box is `face_height` of the image height (pinhole camera)."""
    visible_height = 2.0 * math.tan(math.radians(camera_vfov_deg) / 2.0) * max(face_height, 1e-6)
    return FACE_HEIGHT_M / visible_height


def _ramp(value: float, start: float, end: float) -> float:
    """0 up to `start`, 1 from `end` on, linear between."""
    return min(max((value - start) / (end - start), 0.0), 1.0)


def proximity(face_height: float, config: EngagementConfig) -> float:
    """1 within personal_distance_m of the robot, falling linearly to 0 at max_distance_m."""
    d = distance_m(face_height, config.camera_vfov_deg)
    return 1.0 - _ramp(d, config.personal_distance_m, config.max_distance_m)


def centrality(roi: tuple[float, float, float, float]) -> float:
    """1 within CENTRAL_HALF_WIDTH of the image's horizontal centre, 0 at its left/right edge."""
    offset = abs((roi[0] + roi[2]) / 2.0 - 0.5) / 0.5
    return 1.0 - _ramp(offset, CENTRAL_HALF_WIDTH, 1.0)


def frontal(landmarks: np.ndarray | None, roll_deg: float) -> float:
    """How squarely the face looks at the camera, 0..1, from landmark symmetry and roll."""
    roll = abs(((roll_deg + 180.0) % 360.0) - 180.0) if math.isfinite(roll_deg) else 0.0
    roll_factor = 1.0 - _ramp(roll, ROLL_FREE_DEG, ROLL_LIMIT_DEG)
    if landmarks is None or np.shape(landmarks) != (6, 2):
        return FRONTAL_UNKNOWN * roll_factor
    points = np.asarray(landmarks, dtype=np.float64)
    eyes, nose = points[[RIGHT_EYE, LEFT_EYE]], points[NOSE_TIP]
    if not (np.isfinite(eyes).all() and np.isfinite(nose).all()):
        return FRONTAL_UNKNOWN * roll_factor
    axis = eyes[1] - eyes[0]
    eye_distance = float(np.hypot(*axis))
    if eye_distance < 1e-6:
        return FRONTAL_UNKNOWN * roll_factor
    axis /= eye_distance  # along the eyes, so the measure ignores roll
    nose_offset = abs(float((nose - eyes.mean(axis=0)) @ axis)) / eye_distance
    turned = [_ramp(nose_offset, NOSE_OFFSET_FRONTAL, NOSE_OFFSET_TURNED)]
    ears = points[[RIGHT_EAR, LEFT_EAR]]
    if np.isfinite(ears).all():
        right, left = float((nose - ears[0]) @ axis), float((ears[1] - nose) @ axis)
        if right + left > 1e-6:
            asymmetry = abs(right - left) / (abs(right) + abs(left))
            turned.append(_ramp(asymmetry, EAR_ASYMMETRY_FRONTAL, EAR_ASYMMETRY_TURNED))
    yaw_factor = 1.0 - float(np.mean(turned))
    return yaw_factor * roll_factor


class EngagementEstimator:
    """Scores and states of every track; feed it every camera frame's faces (see module doc)."""

    def __init__(self, config: EngagementConfig | None = None) -> None:
        self.config = config or EngagementConfig()
        self._tracks: dict[int, _Track] = {}
        self._now = -math.inf

    @property
    def track_ids(self) -> list[int]:
        return list(self._tracks)

    @property
    def partner(self) -> int | None:
        """The track the robot is engaged with (ENGAGED or DISENGAGING), if any."""
        return next((t for t, s in self._tracks.items() if s.state in PARTNER_STATES), None)

    def heard_speech(self, track_id: int, stamp: float) -> None:
        """The person of `track_id` just spoke (e.g. a transcript attributed to them)."""
        track = self._tracks.get(track_id)
        if track is not None:
            track.spoke_at = stamp

    def likely_speaker(self) -> int | None:
        """Whom to credit with speech heard now. The robot has one microphone channel and no
        sound localisation, so: the partner if there is one (keeps a talking partner engaged),
        else the visible person with the highest score (the likeliest to address the robot)."""
        if self.partner is not None:
            return self.partner
        visible = [(s.score, t) for t, s in self._tracks.items() if s.visible]
        return max(visible)[1] if visible else None

    def forget(self, track_id: int) -> None:
        self._tracks.pop(track_id, None)

    def status(self, track_id: int) -> EngagementStatus | None:
        track = self._tracks.get(track_id)
        if track is None:
            return None
        return EngagementStatus(
            track_id, track.score, track.state, track.roi, track.cues, track.visible
        )

    def statuses(self) -> dict[int, EngagementStatus]:
        return {t: self.status(t) for t in self._tracks}

    def update(self, stamp: float, faces: Iterable[FaceObservation]) -> dict[int, EngagementStatus]:
        """One camera frame: every face seen in it (tracks not in it count as not attending)."""
        # A stamp going back (a replayed bag looping) must not run the clocks backwards.
        now = max(stamp, self._now) if math.isfinite(self._now) else stamp
        dt = max(now - self._now, 0.0) if math.isfinite(self._now) else 0.0
        self._now = now
        seen = {}
        for face in faces:
            seen[face.track_id] = face
        for track_id, face in seen.items():
            self._observe(track_id, face, now, dt)
        for track_id, track in list(self._tracks.items()):
            if track_id in seen:
                continue
            if now - track.last_seen > self.config.forget_after_s:
                del self._tracks[track_id]
                continue
            track.visible = False
            track.cues = Cues(0.0, track.cues.centrality, track.cues.frontal, 0.0, 0.0)
            self._smooth(track, 0.0, dt)
        self._step_states(now)
        return self.statuses()

    # -- scores

    def _observe(self, track_id: int, face: FaceObservation, now: float, dt: float) -> None:
        track = self._tracks.get(track_id)
        cues = self._cues(face, now - (track.first_seen if track else now), track, now)
        if track is None:
            self._tracks[track_id] = _Track(
                first_seen=now,
                last_seen=now,
                roi=face.roi,
                cues=cues,
                score=cues.instant(),
                observations=1,
                state_since=now,
            )
            return
        track.last_seen, track.roi, track.cues, track.visible = now, face.roi, cues, True
        track.observations += 1
        self._smooth(track, cues.instant(), dt)

    def _cues(
        self, face: FaceObservation, seen_for: float, track: _Track | None, now: float
    ) -> Cues:
        c = self.config
        in_view = NEW_FACE_WEIGHT + (1.0 - NEW_FACE_WEIGHT) * min(seen_for / c.time_in_view_s, 1)
        speech = 0.0
        if track is not None and track.spoke_at is not None:
            age = now - track.spoke_at
            if 0.0 <= age < SPEECH_BOOST_S:
                speech = SPEECH_BOOST * (1.0 - age / SPEECH_BOOST_S)
        return Cues(
            proximity=proximity(face.roi[3] - face.roi[1], c),
            centrality=centrality(face.roi),
            frontal=frontal(face.landmarks, face.roll_deg),
            time_in_view=in_view,
            speech=speech,
        )

    def _smooth(self, track: _Track, instant: float, dt: float) -> None:
        alpha = 1.0 - math.exp(-dt / self.config.smoothing_s)
        track.score += alpha * (instant - track.score)

    # -- states

    def _enter(self, track: _Track, state: int, now: float) -> None:
        track.state, track.state_since, track.better_since = state, now, None

    def _step_states(self, now: float) -> None:
        c = self.config
        for track in self._tracks.values():
            if track.state == UNKNOWN and track.observations >= MIN_OBSERVATIONS:
                self._enter(track, DISENGAGED, now)
            dwelt = now - track.state_since >= c.min_dwell_s
            if track.state == DISENGAGED and track.score >= c.engage_threshold:
                self._enter(track, ENGAGING, now)
            elif track.state == ENGAGING and track.score < c.disengage_threshold:
                self._enter(track, DISENGAGED, now)
            elif track.state == ENGAGED and track.score < c.disengage_threshold:
                self._enter(track, DISENGAGING, now)
            elif track.state == DISENGAGING and track.score >= c.engage_threshold:
                self._enter(track, ENGAGED, now)
            elif track.state == DISENGAGING and dwelt:
                self._enter(track, DISENGAGED, now)
        ready = [
            t
            for t in self._tracks.values()
            if t.state == ENGAGING and now - t.state_since >= c.min_dwell_s
        ]
        partner_id = self.partner
        if partner_id is None:
            if ready:
                self._enter(max(ready, key=lambda t: t.score), ENGAGED, now)
            return
        partner = self._tracks[partner_id]
        challenger = None
        for track in ready:
            if track.score > partner.score + c.switch_margin:
                track.better_since = now if track.better_since is None else track.better_since
                if now - track.better_since >= c.switch_dwell_s and (
                    challenger is None or track.score > challenger.score
                ):
                    challenger = track
            else:
                track.better_since = None
        if challenger is not None:
            # The former partner keeps attending (ENGAGING) or has stopped (DISENGAGED).
            demoted = ENGAGING if partner.score >= c.engage_threshold else DISENGAGED
            self._enter(partner, demoted, now)
            self._enter(challenger, ENGAGED, now)


class SharedEngagement:
    """An EngagementEstimator that threads share: user_profiler_node feeds it on the executor
    (every FaceArray, speech cues) and reads it on the profile worker (each profile's status).
    It also tells when the partner changed, so that the former partner's profile is published
    again at once: subscribers must not hold two engaged profiles for long."""

    def __init__(self, config: EngagementConfig) -> None:
        self._estimator = EngagementEstimator(config)
        self._lock = threading.Lock()
        self._partner: int | None = None  # the partner when `former_partner` last looked

    def update(self, stamp: float, faces: Iterable[FaceObservation]) -> int | None:
        """One camera frame's faces (`EngagementEstimator.update`); returns the partner."""
        with self._lock:
            self._estimator.update(stamp, faces)
            return self._estimator.partner

    def heard_speech(self, stamp: float) -> None:
        """Someone spoke to the robot: the speech cue goes to the likely speaker, if any."""
        with self._lock:
            speaker = self._estimator.likely_speaker()
            if speaker is not None:
                self._estimator.heard_speech(speaker, stamp)

    def status(self, track_id: int) -> EngagementStatus | None:
        with self._lock:
            return self._estimator.status(track_id)

    def states(self, track_ids: Iterable[int]) -> dict[int, int]:
        """The state of each of these tracks the estimator knows."""
        with self._lock:
            statuses = [self._estimator.status(t) for t in track_ids]
        return {s.track_id: s.state for s in statuses if s is not None}

    def former_partner(self) -> int | None:
        """The partner of the previous call when the partner changed since, else None."""
        with self._lock:
            partner = self._estimator.partner
        former, self._partner = self._partner, partner
        return former if former != partner else None
