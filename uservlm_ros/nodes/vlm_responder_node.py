"""vlm_responder_node: answers a user's question about what the robot sees, for that user.

Inputs: the latest camera image (/camera/image_raw), the latest UserProfile per track
(/uservlm/user_profile), questions as the /uservlm/respond action or on /uservlm/question.
Output: /uservlm/response (uservlm/Response): at most one early Response with the first complete
sentence (final=false), then exactly one final Response per question, also for errors (error set).
Requests are queued (bounded) and answered one at a time in arrival order.

    python -m uservlm_ros.nodes.vlm_responder_node --ros-args -p model.path:=/models/user-vlm \
        -p "model.adapters:=[instruct=/models/instruct, dpo=/models/dpo]"
"""

from __future__ import annotations

import sys
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.action import ActionServer, CancelResponse
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.task import Future
from sensor_msgs.msg import Image
from std_msgs.msg import Header, String
from uservlm.action import Respond
from uservlm.msg import Response, UserProfile

from uservlm_ros.backends.openai_responder import ServerOptions, parse_server_adapters
from uservlm_ros.backends.responder_pipeline import (
    AskerView,
    PipelineSettings,
    Question,
    ResponderPipeline,
    Utterance,
)
from uservlm_ros.backends.vlm import (
    DEFAULT_MAX_NEW_TOKENS,
    VlmOptions,
    parse_adapters,
)
from uservlm_ros.backends.vlm_registry import VLM_BACKENDS, BackendSettings, make_vlm_backend
from uservlm_ros.core import addressee as addressing
from uservlm_ros.core import health
from uservlm_ros.core.bias_guard import SAFE_REPLY, BiasGuard
from uservlm_ros.core.errors import ConfigError, UservlmError
from uservlm_ros.core.health import health_params
from uservlm_ros.core.parameters import Param
from uservlm_ros.core.prompt import MODES, USER_AWARE
from uservlm_ros.core.request_queue import RequestQueue
from uservlm_ros.core.worker import Worker
from uservlm_ros.ros import topics
from uservlm_ros.ros.conversions import image_to_rgb, stage_timings, stamp_to_seconds
from uservlm_ros.ros.diagnostics import loss_counter
from uservlm_ros.ros.lifecycle import ModelNode
from uservlm_ros.ros.node_main import run_node
from uservlm_ros.ros.parameters import AUTOSTART
from uservlm_ros.ros.qos import FEEDBACK_QOS, LATCHED_QOS, REQUEST_QOS, SENSOR_QOS
from uservlm_ros.ros.respond_client import request_id_of


def _check_strings(value: list) -> str | None:
    return None if all(isinstance(v, str) for v in value) else "must be a list of strings"


def _check_adapters(value: list) -> str | None:
    try:
        parse_adapters(value)
    except ConfigError as error:
        return str(error)
    return _check_strings(value)


def _check_server_adapters(value: list) -> str | None:
    try:
        parse_server_adapters(value)
    except ConfigError as error:
        return str(error)
    return _check_strings(value)


def _check_guard_patterns(value: list) -> str | None:
    try:
        BiasGuard(extra_patterns=value)
    except ValueError as error:
        return str(error)
    return _check_strings(value)


PARAMS: list[Param] = [
    AUTOSTART,
    Param(
        "responder.backend",
        "paligemma",
        "Who writes the answers: `paligemma` (the User-VLM, needs model.path), `openai` (a model "
        "served by vLLM or another OpenAI-compatible server, see server.*) or `fallback` "
        "(profile-aware templates, labelled responder=fallback-template; never a VLM)",
        choices=tuple(VLM_BACKENDS),
    ),
    Param(
        "responder.mode",
        USER_AWARE,
        "Default prompt mode: user_aware (image + question) or profile_prompt (the asking user's "
        "profile_text is put into the prompt: the papers' baseline); a goal may override it",
        choices=MODES,
    ),
    Param(
        "responder.image",
        "asker",
        "What the model sees in user_aware mode: `asker` = with two or more people in view, a "
        "head-and-shoulders crop of the asker from the camera frame (whole frame with one); "
        "`frame` = always the whole frame (the papers' demo)",
        choices=("asker", "frame"),
        live=True,
    ),
    Param(
        "responder.visible_s",
        5.0,
        "A person counts as in view (for the addressee and the asker's crop) while their latest "
        "profile is at most this old on the camera's clock, seconds; keep it at "
        "user_profiler_node's fusion.expiry_s",
        min=0.1,
        max=3600.0,
        live=True,
    ),
    Param(
        "responder.addressee_floor",
        0.1,
        "A question that names nobody, while nobody is engaged and several people are in view, "
        "is answered for the most engaged of them if their engagement score (0..1) is at least "
        "this; else for nobody. 0 = always the most engaged one; 0.1 leaves out people turned "
        "away or at the far edge of the view (their scores are near 0)",
        min=0.0,
        max=1.0,
        live=True,
    ),
    Param(
        "responder.queue_size",
        4,
        "Questions that may wait while one is answered; more are answered at once with an error",
        min=1,
        max=100,
    ),
    Param(
        "responder.max_question_chars",
        500,
        "Longest accepted question, characters; longer ones get an error Response",
        min=1,
        max=10000,
    ),
    Param(
        "responder.early_sentence",
        True,
        "Publish the first complete sentence early (final=false) so the robot starts speaking",
    ),
    Param(
        "responder.min_sentence_chars",
        12,
        "Shortest early sentence, characters: shorter ones are merged with the next",
        min=1,
        max=1000,
    ),
    Param(
        "responder.fallback_without_model",
        True,
        "paligemma with an empty model.path (a deployment without VLM weights): answer with the "
        "fallback templates (logged once, every Response says responder=fallback-template) so "
        "perception and speech still run; false = configure fails. A model.path that does not "
        "load is always an error",
    ),
    Param(
        "responder.fallback_word_delay_s",
        0.0,
        "fallback backend only: pause between streamed words, seconds (a demo shows streaming)",
        min=0.0,
        max=1.0,
    ),
    Param(
        "model.path",
        "",
        "VLM folder (PaliGemma-2 / User-VLM, save_pretrained layout) or a hub id already in the "
        "local Hugging Face cache; nothing is downloaded. Empty: see "
        "responder.fallback_without_model",
    ),
    Param(
        "model.adapters",
        [],
        "peft LoRA adapters to load, NAME=FOLDER each, e.g. [instruct=/m/instruct, dpo=/m/dpo]; "
        "a request picks one by name, `base` = adapters disabled",
        check=_check_adapters,
    ),
    Param(
        "model.default_adapter",
        "",
        "Adapter used when a request names none; empty = base",
    ),
    Param("model.device", "auto", "torch device: auto (cuda if available), cpu, cuda, cuda:N"),
    Param(
        "model.dtype",
        "auto",
        "Weights dtype: auto = bfloat16 on CUDA, float32 on CPU",
        choices=("auto", "float32", "bfloat16", "float16"),
    ),
    Param("model.warmup", True, "Run a short generation per adapter at configure"),
    Param(
        "model.fast_decode",
        True,
        "Own greedy decode loop with a static KV cache (and CUDA graphs on CUDA); false = "
        "transformers generate (same tokens, slower)",
    ),
    Param(
        "server.url",
        "http://localhost:8000/v1",
        "openai backend: the server's OpenAI-compatible API base (vLLM: http://HOST:8000/v1); "
        "https:// for TLS terminated by the server or a proxy",
    ),
    Param(
        "server.model",
        "",
        "openai backend: the served model's name (vLLM --served-model-name, else its --model)",
    ),
    Param(
        "server.adapters",
        [],
        "openai backend: adapters a goal may name, each NAME (served under that name: vLLM "
        "--lora-modules NAME=FOLDER) or NAME=SERVED_NAME; `base` = server.model",
        check=_check_server_adapters,
    ),
    Param(
        "server.api_key_file",
        "",
        "openai backend: a file holding the server's API key (sent as a bearer token, never "
        "logged); empty = no key",
    ),
    Param(
        "server.connect_timeout_s",
        5.0,
        "openai backend: longest wait for a connection to the server, seconds",
        min=0.1,
        max=300.0,
    ),
    Param(
        "server.token_timeout_s",
        30.0,
        "openai backend: longest wait for the next streamed token (the first one included), "
        "seconds; longer means the question ends with an error (server slow or overloaded)",
        min=0.1,
        max=600.0,
    ),
    Param(
        "server.fallback",
        False,
        "openai backend: when the server fails before the first token (down, overloaded, "
        "refused), answer with the fallback templates (responder=fallback-template, logged) "
        "instead of an error Response",
    ),
    Param(
        "generation.max_new_tokens",
        DEFAULT_MAX_NEW_TOKENS,
        "Default generation limit, tokens (the papers use 100); a goal may ask for fewer or more",
        min=1,
        max=2048,
    ),
    Param(
        "guard.enabled",
        True,
        "Fairness guard: replace answers that state the user's ethnicity or generalise about a "
        "demographic group (unless the question asks) with guard.safe_reply, and log it",
    ),
    Param(
        "guard.extra_patterns",
        [],
        "More guard patterns, FAMILY:REGEX each (FAMILY: ethnicity or generalisation)",
        check=_check_guard_patterns,
    ),
    Param("guard.safe_reply", SAFE_REPLY, "What the robot says instead of a blocked answer"),
    # Answers take seconds on a CPU; one question for two minutes means the model hangs.
    *health_params(max_processing_ms=30000.0, hang_s=120.0),
]


@dataclass
class Job:
    """A question and, for action requests, the goal waiting for its final Response."""

    question: Question
    goal: Any = None  # ServerGoalHandle for action requests
    done: Future | None = None  # resolved with the final Response (action requests)
    person_id: str = ""  # the person the question names (goal.person_id); "" = by track

    @property
    def request_id(self) -> str:
        return self.question.request_id

    def cancel_requested(self) -> bool:
        return self.goal is not None and self.goal.is_cancel_requested


class VlmResponderNode(ModelNode):
    def __init__(self, **kwargs) -> None:
        super().__init__("vlm_responder_node", PARAMS, **kwargs)
        self.pipeline: ResponderPipeline | None = None
        self.backend_name = self.params["responder.backend"]  # "fallback" without weights
        self.queue: RequestQueue[Job] = RequestQueue(self.params["responder.queue_size"])
        self._lock = threading.Lock()
        self._latest_image: Image | None = None
        self._profiles: dict[int, UserProfile] = {}
        self._camera_clock: tuple[float, float] | None = None  # (newest camera stamp, wall arrival)
        self._worker: Worker[Job] = Worker(
            self.queue.get, self._work_on, "responder", self._job_failed
        )
        self.workers = [self._worker]
        self._action: ActionServer | None = None

    @property
    def backend(self):
        return self.pipeline.backend if self.pipeline is not None else None

    # ------------------------------------------------------------------ lifecycle

    def _configure(self) -> TransitionCallbackReturn:
        p = self.params
        log = self.get_logger()
        options = VlmOptions(
            path=p["model.path"],
            adapters=parse_adapters(p["model.adapters"]),
            default_adapter=p["model.default_adapter"],
            device=p["model.device"],
            dtype=p["model.dtype"],
            fast_decode=p["model.fast_decode"],
            warmup=p["model.warmup"],
        )
        self.backend_name = p["responder.backend"]
        if self.backend_name == "fallback":
            log.warning(
                "responder.backend is 'fallback': answers come from TEMPLATES, not from a VLM "
                "(every Response says responder=fallback-template)"
            )
        elif (
            self.backend_name == "paligemma"
            and not options.path
            and p["responder.fallback_without_model"]
        ):
            self.backend_name = "fallback"
            log.warning(
                f"no VLM weights (model.path is empty): answering with the FALLBACK responder, "
                f"templates instead of {p['responder.backend']} (every Response says "
                "responder=fallback-template); set model.path (launch argument vlm_model) for "
                "the User-VLM"
            )
        try:
            settings = BackendSettings(
                log=log.info,
                warn=log.warning,
                word_delay_s=p["responder.fallback_word_delay_s"],
                server=self._server_options() if self.backend_name == "openai" else None,
            )
            backend = make_vlm_backend(self.backend_name, options, settings)
            if options.default_adapter and options.default_adapter not in backend.adapters:
                raise ConfigError(
                    f"model.default_adapter {options.default_adapter!r} is not loaded "
                    f"(adapters: {', '.join(backend.adapters)})"
                )
            started = time.perf_counter()
            backend.load()
            if options.warmup:
                backend.warm_up()
                log.info(f"warm-up done in {time.perf_counter() - started:.1f} s")
        except UservlmError as error:
            log.error(f"cannot configure the responder: {error}")
            return TransitionCallbackReturn.FAILURE
        self.pipeline = ResponderPipeline(
            backend,
            BiasGuard(p["guard.extra_patterns"], p["guard.safe_reply"]),
            self._pipeline_settings,
            self._log_blocked,
        )
        if self.queue.capacity != p["responder.queue_size"]:
            self.queue = RequestQueue(p["responder.queue_size"])
            self._worker = Worker(self.queue.get, self._work_on, "responder", self._job_failed)
            self.workers = [self._worker]
        self.start_diagnostics(self.backend_name)
        return TransitionCallbackReturn.SUCCESS

    def _server_options(self) -> ServerOptions:
        p = self.params
        return ServerOptions(
            url=p["server.url"],
            model=p["server.model"],
            adapters=parse_server_adapters(p["server.adapters"]),
            api_key_file=p["server.api_key_file"],
            connect_timeout_s=p["server.connect_timeout_s"],
            token_timeout_s=p["server.token_timeout_s"],
            fallback=p["server.fallback"],
        )

    def _pipeline_settings(self) -> PipelineSettings:
        p = self.params
        return PipelineSettings(
            guard_enabled=p["guard.enabled"],
            early_sentence=p["responder.early_sentence"],
            min_sentence_chars=p["responder.min_sentence_chars"],
        )

    def on_activate(self, state) -> TransitionCallbackReturn:
        self._response_pub = self.create_publisher(Response, topics.RESPONSE, REQUEST_QOS)
        self._io = [
            self._response_pub,
            self.create_subscription(Image, topics.IMAGE, self._on_image, SENSOR_QOS),
            self.create_subscription(UserProfile, topics.PROFILE, self._on_profile, LATCHED_QOS),
            self.create_subscription(
                String,
                topics.QUESTION,
                self._on_question,
                REQUEST_QOS,
                event_callbacks=loss_counter(self, "questions_lost"),
            ),
        ]
        self._action = ActionServer(
            self,
            Respond,
            topics.RESPOND_ACTION,
            execute_callback=self._execute_goal,
            cancel_callback=lambda _: CancelResponse.ACCEPT,
            # Services keep 10 requests by default: a burst of goals would lose the rest.
            goal_service_qos_profile=REQUEST_QOS,
            result_service_qos_profile=REQUEST_QOS,
            feedback_pub_qos_profile=FEEDBACK_QOS,
        )
        self.queue.reopen()
        self._worker.start()
        self.diagnostics.set_status(DiagnosticStatus.OK, "active")
        self.get_logger().info(
            f"vlm_responder_node active ({self.backend_name}, default mode "
            f"{self.params['responder.mode']}): {self.resolve_topic_name(topics.QUESTION)} or "
            f"{self.resolve_topic_name(topics.RESPOND_ACTION)} -> "
            f"{self.resolve_topic_name(topics.RESPONSE)}"
        )
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        result = super().on_deactivate(state)  # answers what is queued, then drops the I/O
        if self._action is not None:
            self._action.destroy()
            self._action = None
        return result

    def _release_model(self) -> None:
        self.pipeline = None

    def _stop_work(self) -> None:
        """Stop taking questions; every waiting one still gets its (error) Response."""
        self.queue.close()
        super()._stop_work()
        for job in self.queue.drain():
            self._finish(job, self._error(job, "the responder is shutting down"))

    def _extra_health(self) -> list[health.Verdict]:
        return [health.judge_queue("question", len(self.queue), self.queue.capacity)]

    # ------------------------------------------------------------------ inputs

    def _on_image(self, msg: Image) -> None:
        with self._lock:
            self._latest_image = msg
            self._saw_stamp(msg.header.stamp)
        self.diagnostics.count("images_received")

    def _on_profile(self, msg: UserProfile) -> None:
        with self._lock:
            self._profiles[msg.track_id] = msg
            self._saw_stamp(msg.header.stamp)

    def _on_question(self, msg: String) -> None:
        self._submit(self._new_job(msg.data, source="topic"))

    async def _execute_goal(self, goal_handle) -> Respond.Result:
        request = goal_handle.request
        job = self._new_job(
            request.question,
            request.track_id,
            request.mode,
            request.max_new_tokens,
            request.adapter,
            request_id=request_id_of(goal_handle.goal_id.uuid),
            source=request.source,
        )
        job.goal, job.done, job.person_id = goal_handle, Future(), request.person_id
        immediate = self._submit(job)
        response = immediate if immediate is not None else await job.done
        if response.error == "":
            goal_handle.succeed()
        elif goal_handle.is_cancel_requested:
            goal_handle.canceled()
        else:
            goal_handle.abort()
        return Respond.Result(response=response)

    def _new_job(
        self,
        question: str,
        track_id: int = 0,
        mode: str = "",
        max_new: int = 0,
        adapter: str = "",
        request_id: str = "",
        source: str = "",
    ) -> Job:
        return Job(
            Question(
                request_id=request_id or uuid.uuid4().hex[:12],
                question=question,
                track_id=track_id,
                mode=mode or self.params["responder.mode"],
                max_new_tokens=max_new or self.params["generation.max_new_tokens"],
                adapter=adapter,
                source=source,
            )
        )

    def _submit(self, job: Job) -> Response | None:
        """Queue a job; returns its error Response when it cannot be queued (also published)."""
        self.diagnostics.count("questions")
        problem = self._validate(job.question)
        if problem is None:
            try:
                ahead = self.queue.put(job)
                self.diagnostics.values["queue_length"] = len(self.queue)
                self.get_logger().info(
                    f"[{job.request_id}] queued ({ahead} ahead): {job.question.question[:80]!r}"
                )
                return None
            except UservlmError as error:
                self.diagnostics.count("rejected_queue_full")
                problem = str(error)
        response = self._error(job, problem)
        self._finish(job, response)
        return response

    def _validate(self, question: Question) -> str | None:
        limit = self.params["responder.max_question_chars"]
        if not question.question.strip():
            return "empty question"
        if len(question.question) > limit:
            return f"question too long ({len(question.question)} characters; the limit is {limit})"
        if question.mode not in MODES:
            return f"unknown mode {question.mode!r}; expected one of {', '.join(MODES)}"
        if question.adapter and question.adapter not in self.backend.adapters:
            return (
                f"unknown adapter {question.adapter!r}; loaded: {', '.join(self.backend.adapters)}"
            )
        return None

    # ------------------------------------------------------------------ answering

    def _work_on(self, job: Job) -> None:
        self.diagnostics.values["queue_length"] = len(self.queue)
        self._finish(job, self._answer(job))

    def _job_failed(self, job: Job | None, error: Exception) -> None:
        """Whatever the model or a conversion does, the question still gets its Response."""
        if job is None:
            return
        self.get_logger().error(f"[{job.request_id}] generation failed: {error!r}")
        self.diagnostics.count("generation_errors")
        self._finish(job, self._error(job, f"generation failed: {error}"))

    def _answer(self, job: Job) -> Response:
        question = job.question
        if job.cancel_requested():
            return self._error(job, "cancelled before generation started")
        with self._lock:
            image_msg = self._latest_image
            people = self._people()
            now = self._camera_now()
        whom = addressing.choose_addressee(
            question.track_id,
            people,
            now,
            self.params["responder.visible_s"],
            job.person_id,
            self.params["responder.addressee_floor"],
        )
        if whom.error:
            response = self._error(job, whom.error)
            response.addressee = whom.how
            return response
        track = whom.track_id
        with self._lock:
            profile = self._profiles.get(track) if track else None
        image, camera_stamp, seen = None, None, addressing.NO_IMAGE
        if image_msg is not None:
            camera_stamp = image_msg.header.stamp
            try:
                image = image_to_rgb(image_msg)
            except UservlmError as error:
                self.diagnostics.count("images_rejected")
                return self._error(job, f"the camera image is unusable: {error}")
            image, seen = self._asker_image(image, whom, people, question.mode)
        elif self.backend_name != "fallback":
            return self._error(
                job, f"no camera image received yet on {self.resolve_topic_name(topics.IMAGE)}"
            )
        if profile is None:
            self.get_logger().info(
                f"[{job.request_id}] nobody to address ({len(whom.visible)} in view): "
                "answered without a profile"
            )
        view = AskerView(
            image=image,
            track_id=track,
            profile_text=profile.profile_text if profile is not None else "",
            labels=_known_labels(profile),
        )

        def on_partial(text: str, tokens: int) -> None:
            if job.goal is not None:
                job.goal.publish_feedback(
                    Respond.Feedback(partial_text=text, tokens_generated=tokens)
                )

        def on_early(utterance: Utterance, elapsed_ms: float) -> None:
            early = self._response(job, camera_stamp, view.track_id, whom.person_id, responder)
            _address(early, whom, seen)
            early.final = False
            _fill(early, utterance)
            early.timings = stage_timings({"question_to_first_sentence": elapsed_ms})
            early.header = Header(stamp=self.get_clock().now().to_msg())
            self._response_pub.publish(early)
            self.diagnostics.count("early_sentences")

        responder = self.backend.responder_id(question.adapter)
        answer = self.pipeline.answer(
            question,
            view,
            on_partial,
            on_early,
            should_stop=lambda: job.cancel_requested() or not self._worker.state().running,
        )
        response = self._response(
            job, camera_stamp, view.track_id, whom.person_id, answer.responder
        )
        _address(response, whom, seen)
        if answer.utterance is not None:
            _fill(response, answer.utterance)
        else:
            response.error = answer.error
            self.diagnostics.count("cancelled" if job.cancel_requested() else "empty_answers")
        response.timings = stage_timings(answer.timings_ms)
        self.get_logger().info(
            f"[{job.request_id}] {answer.responder}, {answer.new_tokens} tokens "
            f"({answer.finish_reason}) in {answer.timings_ms['total']:.0f} ms: "
            f"{(response.text or response.error)[:100]!r}"
        )
        return response

    # -- addressee and the asker's image (core/addressee.py)

    def _saw_stamp(self, stamp) -> None:
        """Keep the camera's clock: the newest stamp seen and when it came (lock held)."""
        arrived = time.time()
        seconds = stamp_to_seconds(stamp) or arrived
        if self._camera_clock is None or seconds > self._camera_clock[0]:
            self._camera_clock = (seconds, arrived)

    def _camera_now(self) -> float:
        if self._camera_clock is None:
            return time.time()
        stamp, arrived = self._camera_clock
        return stamp + (time.time() - arrived)

    def _people(self) -> dict[int, addressing.Seen]:
        """Everyone a profile describes (lock held); core/addressee decides who is in view."""
        return {
            track: addressing.Seen(
                track,
                tuple(float(v) for v in p.roi),
                bool(p.engaged),
                stamp_to_seconds(p.header.stamp) or self._camera_now(),
                float(p.engagement),
                p.person_id,
            )
            for track, p in self._profiles.items()
        }

    def _asker_image(self, image, whom, people, mode: str):
        """The image the model gets and its normalised region of the frame."""
        height, width = image.shape[:2]
        image_mode = self.params["responder.image"] if mode == USER_AWARE else "frame"
        roi = addressing.image_roi(whom, people, image_mode, width, height)
        if roi == addressing.WHOLE_FRAME:
            return image, roi
        return addressing.crop(image, roi), roi

    def _log_blocked(self, question: Question, reason: str) -> None:
        self.diagnostics.count("guard_replaced")
        self.get_logger().warning(
            f"[{question.request_id}] fairness guard replaced the answer ({reason})"
        )

    def _response(
        self, job: Job, camera_stamp, track_id: int, person_id: str, responder: str
    ) -> Response:
        response = Response(
            request_id=job.request_id,
            track_id=track_id,
            person_id=person_id,
            question=job.question.question,
            final=True,
            mode=job.question.mode,
            responder=responder,
        )
        if camera_stamp is not None:
            response.camera_stamp = camera_stamp
        return response

    def _error(self, job: Job, error: str) -> Response:
        self.get_logger().warning(f"[{job.request_id}] no answer: {error}")
        self.diagnostics.count("errors")
        responder = self.backend.responder_id(job.question.adapter) if self.backend else ""
        # What the question named: no addressee was chosen, or not answered for them.
        response = self._response(job, None, job.question.track_id, job.person_id, responder)
        response.error = error
        response.timings = stage_timings(
            {"queue": (time.monotonic() - job.question.received) * 1e3}
        )
        return response

    def _finish(self, job: Job, response: Response) -> None:
        """Publish the one final Response of a job and hand it to a waiting action goal."""
        response.header = Header(stamp=self.get_clock().now().to_msg())
        self._response_pub.publish(response)
        self.diagnostics.count("answered" if not response.error else "answered_with_error")
        if job.done is not None and not job.done.done():
            job.done.set_result(response)


def _address(response: Response, whom: addressing.Addressee, image_roi) -> None:
    response.addressee = whom.how
    response.image_roi = [float(v) for v in image_roi]


def _fill(response: Response, utterance: Utterance) -> None:
    response.text = utterance.text
    response.sentiment = utterance.sentiment
    response.gesture = utterance.gesture


def _known_labels(profile: UserProfile | None) -> dict[str, str]:
    if profile is None:
        return {}
    estimates = (profile.age_group, profile.gender, profile.emotion)  # never ethnicity
    return {e.name: e.label for e in estimates if e.known and e.name}


# What a container (nodes/container.py) builds under this node's name.
NODE = VlmResponderNode


def main(args=None):
    # Every callback is short (answers are made on the worker thread; the action's execute
    # callback awaits them): one executor thread costs about half the CPU of several, most of
    # it spent on the 15 camera frames a second (docs/benchmarks.md).
    sys.exit(run_node(VlmResponderNode, args, single_threaded=True))


if __name__ == "__main__":
    main()
