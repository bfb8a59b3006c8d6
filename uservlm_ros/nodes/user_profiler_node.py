"""user_profiler_node: tracked face crops -> one fused profile per user (uservlm/UserProfile).

    python -m uservlm_ros.nodes.user_profiler_node --ros-args -p backend:=attributes

Subscribes /uservlm/faces (uservlm/FaceArray, reliable); publishes /uservlm/user_profile
(uservlm/UserProfile, reliable + transient-local, at most `publish.max_rate_hz` per person).
Face crops are processed in memory only; nothing is written to disk.

Every FaceArray also feeds the engagement estimator (core/engagement.py), also those the profiler
skips while busy; each profile carries its track's face box, engagement score and state.
"""

from __future__ import annotations

import time

from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.lifecycle import TransitionCallbackReturn
from uservlm.msg import FaceArray, Transcript, UserProfile

from uservlm_ros.backends.profiler import PROFILERS
from uservlm_ros.core.camera_clock import RESTART_S, CameraClock
from uservlm_ros.core.engagement import EngagementConfig, SharedEngagement
from uservlm_ros.core.errors import UservlmError
from uservlm_ros.core.fusion import (
    ATTRIBUTE_PARAMS,
    FusionConfig,
    ProfileFusion,
    enabled_attributes,
    fusion_config,
)
from uservlm_ros.core.health import health_params
from uservlm_ros.core.parameters import Param, config_of, params_of
from uservlm_ros.core.person_profiles import PersonProfiles, PublishConfig, PublishRate
from uservlm_ros.core.persons import PersonsConfig, face_id
from uservlm_ros.core.profile_schedule import (
    PROFILED,
    ProfileScheduler,
    ScheduleConfig,
    quality_problem,
)
from uservlm_ros.core.worker import SlotWorker
from uservlm_ros.ros import person_identity, topics
from uservlm_ros.ros.conversions import (
    face_landmarks,
    face_px,
    face_to_observation,
    faces_to_profile,
    image_to_rgb,
    profile_to_msg,
    set_engagement,
    stage_timings,
    stamp_to_seconds,
)
from uservlm_ros.ros.diagnostics import log_rejection, log_running
from uservlm_ros.ros.intra_process import intra_process_subscription
from uservlm_ros.ros.lifecycle import ModelNode
from uservlm_ros.ros.node_main import node_main
from uservlm_ros.ros.param_declare import AUTOSTART
from uservlm_ros.ros.person_identity import PersonIdentity
from uservlm_ros.ros.qos import LATCHED_QOS, RELIABLE_QOS
from uservlm_ros.ros.rep155 import REP155_PARAMS, HumansPublisher, frame_views, rep155_output

PARAMS = [
    AUTOSTART,
    PROFILERS.choice_param("backend", "attributes", "Profiler"),
    *PROFILERS.params(),
    *ATTRIBUTE_PARAMS,
    *params_of(FusionConfig, "fusion"),
    *params_of(PublishConfig, "publish"),
    Param(
        "max_faces",
        10,
        "Faces profiled per FaceArray at most: the largest ones; the rest are skipped and "
        "counted (bounds time and memory in a crowd)",
        min=1,
        max=100,
        live=True,
    ),
    *params_of(ScheduleConfig, "profile"),
    # One crop takes ~10 ms with the shipped models on 2 cores; a frame of 10 faces ~100 ms.
    *health_params(max_processing_ms=250.0, hang_s=10.0),
    *params_of(EngagementConfig, "engagement"),
    *person_identity.PARAMS,
    *REP155_PARAMS,
]


class UserProfilerNode(ModelNode):
    def __init__(self, **kwargs) -> None:
        super().__init__("user_profiler_node", PARAMS, **kwargs)
        self.profiler = None
        self.people: PersonProfiles | None = None
        self._worker: SlotWorker[tuple[FaceArray, float]] = SlotWorker(
            lambda item: self._process(*item),
            "profiler_worker",
            self.worker_error_logger(
                lambda item: (
                    f"FaceArray {item[0].header.stamp} "
                    f"(tracks {[face.track_id for face in item[0].faces][:10]})"
                )
            ),
            idle=self._expire,
        )
        self.identity = PersonIdentity(self, self._identified)
        self.workers = [self._worker, self.identity.worker]
        self.rate = PublishRate(config_of(PublishConfig, "publish", self.params))
        self._rejections: dict[str, float] = {}
        self._publisher = None
        self.clock = CameraClock(restart_s=RESTART_S)  # frames only: follows a looping bag
        self.engagement: SharedEngagement | None = None
        self._last_profiles: dict[int, UserProfile] = {}
        self._humans: HumansPublisher | None = None  # REP-155 output (ros/rep155.py)

    @property
    def enabled(self) -> frozenset[str]:
        return enabled_attributes(self.params)

    def _configure(self) -> TransitionCallbackReturn:
        p = self.params
        try:
            self.profiler = PROFILERS.create(p["backend"], p)
        except UservlmError as error:
            self.get_logger().error(f"cannot load the {p['backend']} profiler: {error}")
            return TransitionCallbackReturn.FAILURE
        try:
            self.engagement = SharedEngagement(self._engagement_config())
            registry = self.identity.registry()
        except (ValueError, UservlmError) as error:
            self.get_logger().error(f"bad engagement or persons parameters: {error}")
            return TransitionCallbackReturn.FAILURE
        self.people = PersonProfiles(
            registry,
            ProfileFusion(fusion_config(p), supported=self.profiler.supported),
            ProfileScheduler(self._schedule_config()),
            self.identity.schedule(),
            track_expiry_s=p["fusion.expiry_s"],
        )
        self.identity.start(self.people)
        self.start_diagnostics(self.profiler.model_id)
        estimated = ", ".join(sorted(self.enabled & self.profiler.supported)) or "nothing"
        self.get_logger().info(f"profiler {self.profiler.model_id} loaded; estimating {estimated}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state) -> TransitionCallbackReturn:
        self._publisher = self.create_publisher(UserProfile, topics.PROFILE, LATCHED_QOS)
        self._io = [
            self._publisher,
            # in a container, straight from face_crop_node (ros/intra_process.py)
            intra_process_subscription(self, FaceArray, topics.FACES, self._on_faces, RELIABLE_QOS),
            self.create_subscription(
                Transcript, topics.TRANSCRIPT, self._on_transcript, RELIABLE_QOS
            ),
        ]
        self._humans = rep155_output(
            self, HumansPublisher, "humans/ topics", crop_size=self.params["rep155.crop_size"]
        )
        self._worker.start()
        self.identity.worker.start()
        self.diagnostics.set_status(DiagnosticStatus.OK, "active")
        log_running(self, "active", "{} -> {}", topics.FACES, topics.PROFILE)
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        result = super().on_deactivate(state)
        humans, self._humans = self._humans, None
        if humans is not None:
            humans.close()
        self.identity.save()
        return result

    def _schedule_config(self) -> ScheduleConfig:
        return config_of(ScheduleConfig, "profile", self.params)

    def _apply_live(self, changed: dict) -> None:
        self.rate.config = config_of(PublishConfig, "publish", self.params)
        people = self.people
        if people is None:
            return
        with people.lock:  # thresholds, privacy switches, fusion, persons: from the next crop on
            people.fusion.config = fusion_config(self.params)
            people.scheduler.config = self._schedule_config()
            people.registry.config = config_of(PersonsConfig, "persons", self.params)
            people.track_expiry_s = self.params["fusion.expiry_s"]
            people.embeddings.config = self.identity.embedding_config()

    def _release_model(self) -> None:
        self.identity.close()
        self.profiler = self.people = self.engagement = None

    def destroy_node(self) -> None:
        super().destroy_node()  # stops the workers first
        identity = getattr(self, "identity", None)  # unset when a bad parameter stopped __init__
        if identity is not None:
            identity.close()

    def _on_faces(self, msg: FaceArray) -> None:
        self._feed_engagement(msg)
        self._publish_humans(msg)
        if self._worker.put((msg, time.time())):
            self.diagnostics.count("face_arrays_dropped")
        self.diagnostics.count("face_arrays_received")

    def _expire(self) -> None:
        self._republish_former_partner()
        ended, forgotten = self.people.expire(self.clock.now())
        for track_id in ended:
            self._last_profiles.pop(track_id, None)
            self.diagnostics.count("tracks_expired")
        self.diagnostics.count("persons_forgotten", len(forgotten))
        with self.people.lock:
            self.rate.keep(set(self.people.fusion.keys))
        tracked, known, _ = self.people.in_view()
        self.diagnostics.values["tracks"] = len(tracked)
        self.diagnostics.values["persons_known"] = len(known)

    def _identified(self, track_id: int, match) -> None:
        """A track's person was identified: subscribers learn the id now, not at the person's
        next profile (the track's latest profile again, its frame and stages, under the id)."""
        last = self._last_profiles.get(track_id)
        if last is not None:
            self._publish_profile(last.header, list(last.timings), track_id, match.person_id)

    def _faces_to_profile(self, msg: FaceArray) -> list:
        """The `max_faces` largest faces with a valid, distinct track id (0 is never a face)."""
        valid, rejected, skipped = faces_to_profile(msg.faces, self.params["max_faces"])
        for track_id in rejected:
            self.diagnostics.count("faces_rejected")
            log_rejection(
                self,
                self._rejections,
                f"rejected face with track id {track_id}: ids must be >= 1 and distinct within "
                "a FaceArray",
            )
        self.diagnostics.count("faces_skipped", skipped)
        return valid

    def _schedule(self, msg: FaceArray, face, crop, camera: float, person_id: str) -> bool:
        """Whether this crop is profiled now (profile.* schedule and quality gate, per person);
        a skipped crop is counted by reason and still keeps the profile alive."""
        people = self.people
        if not people.scheduler.config.enabled:
            return True
        reason = people.scheduler.decide(
            person_id,
            camera,
            people.fusion,
            face_px(face, msg.image_width, msg.image_height),
            face_landmarks(face),
            face.roll_deg,
            crop,
        )
        self.diagnostics.count(f"crops_{reason}")
        return reason in PROFILED

    def _fit_for_identity(self, msg: FaceArray, face, crop) -> bool:
        side = face_px(face, msg.image_width, msg.image_height)
        gate = self.people.scheduler.config
        return self.identity.fit(
            crop, quality_problem(gate, side, face_landmarks(face), face.roll_deg, crop)
        )

    def _process(self, msg: FaceArray, received: float) -> None:
        taken = time.time()
        camera = self.clock.seen(stamp_to_seconds(msg.header.stamp), received)
        people = self.people
        faces, crops, fit = [], [], {}
        for face in self._faces_to_profile(msg):
            try:
                crop = image_to_rgb(face.crop)
            except UservlmError as error:
                self.diagnostics.count("crops_rejected")
                log_rejection(
                    self, self._rejections, f"rejected crop of track {face.track_id}: {error}"
                )
                continue
            with people.lock:
                person_id = people.observe(face.track_id, camera)
                if self._schedule(msg, face, crop, camera, person_id):
                    crops.append(crop)
                    faces.append(face)
            if self.identity.on and self._fit_for_identity(msg, face, crop):
                fit[face.track_id] = crop
        self.identity.offer(fit, camera)
        if not faces:
            return
        estimates = self.profiler.estimate(crops, self.enabled)
        profiled = time.time()
        upstream = sum(t.duration_ms for t in msg.timings)
        timings = {
            "faces_transport": max((received - camera) * 1e3 - upstream, 0.0),
            "profile_queue": (taken - received) * 1e3,
            "profile": (profiled - taken) * 1e3,
        }
        for face, estimate in zip(faces, estimates, strict=True):
            with people.lock:
                person_id = people.observe(face.track_id, camera)
                people.fusion.update(person_id, camera, estimate)
            self.diagnostics.count("crops_profiled")
            now = time.time()
            if not self.rate.due(person_id, now):
                continue
            timings["fuse"] = (now - profiled) * 1e3
            stages = [*msg.timings, *stage_timings(timings)]
            self._publish_profile(msg.header, stages, face.track_id, person_id)

    def _publish_profile(self, header, timings: list, track_id: int, person_id: str) -> None:
        """The fused profile of `person_id`, seen as `track_id` in the frame of `header`, with
        the stages that led to it."""
        with self.people.lock:
            fused = self.people.fusion.current(person_id)
            person = self.people.registry.person(person_id)
        if fused is None or person is None:  # forgotten meanwhile
            return
        profile = profile_to_msg(fused, header, self.profiler.model_id, timings, track_id, person)
        self._publisher.publish(self._with_engagement(profile))
        self.diagnostics.count("profiles_published")
        humans = self._humans
        if humans is not None:
            humans.publish_profile(face_id(track_id), profile)

    def _publish_humans(self, msg: FaceArray) -> None:
        """REP-155 for one FaceArray: its faces, and the persons they belong to (a track the
        profile worker has not seen yet is its anonymous person, as it will be there)."""
        humans, people = self._humans, self.people
        if humans is None or people is None:
            return
        faces = [f for f in msg.faces if f.track_id > 0]
        tracked, known, confidence = people.in_view()
        levels = self.engagement.states(f.track_id for f in faces)
        views, persons = frame_views(faces, tracked, confidence, levels)
        try:
            humans.publish_frame(msg.header, views)
            humans.publish_persons(msg.header, persons, known)
        except ValueError as error:  # a box outside 0..1 or the like: this frame only
            self.diagnostics.count("rep155_rejected")
            log_rejection(self, self._rejections, f"REP-155 output skipped a frame: {error}")

    # -- engagement (core/engagement.py): fed per FaceArray, read when a profile is published

    def _engagement_config(self) -> EngagementConfig:
        return config_of(
            EngagementConfig,
            "engagement",
            self.params,
            forget_after_s=self.params["fusion.expiry_s"],
        )

    def _feed_engagement(self, msg: FaceArray) -> None:
        # Frames without a stamp count as seen on arrival (as for fusion).
        stamp = stamp_to_seconds(msg.header.stamp) or time.time()
        observations = []
        for face in msg.faces:
            try:
                if face.track_id == 0:  # rejected (and logged) by _faces_to_profile as well
                    continue
                observations.append(face_to_observation(face))
            except ValueError as error:
                self.diagnostics.count("faces_rejected")
                log_rejection(self, self._rejections, f"rejected face: {error}")
        partner = self.engagement.update(stamp, observations)
        self.diagnostics.values["engaged_track"] = partner if partner is not None else "none"

    def _on_transcript(self, msg: Transcript) -> None:
        """Someone spoke to the robot (not the robot itself): the engagement speech cue."""
        if msg.dropped in ("", "noise", "low_confidence") and msg.text.strip():
            self.engagement.heard_speech(self.clock.now())
            self.diagnostics.count("speech_cues")

    def _with_engagement(self, profile: UserProfile) -> UserProfile:
        status = self.engagement.status(profile.track_id)
        self._last_profiles[profile.track_id] = profile
        return set_engagement(profile, status)

    def _republish_former_partner(self) -> None:
        """When the engagement moved, publish the former partner's profile at once (not after
        its rate limit) so that subscribers never hold two engaged profiles for long."""
        former = self.engagement.former_partner()
        if former not in self._last_profiles:
            return
        self._publisher.publish(self._with_engagement(self._last_profiles[former]))
        self.diagnostics.count("profiles_published")


NODE = UserProfilerNode  # what a container (nodes/container.py) builds under this node's name
main = node_main(NODE)

if __name__ == "__main__":
    main()
