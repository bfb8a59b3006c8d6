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

import contextlib
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

from uservlm_ros.backends.responder import Asker, Reply, Responder, ResponderConfig
from uservlm_ros.backends.responder_pipeline import PipelineSettings, Question, ResponderPipeline
from uservlm_ros.backends.vlm_registry import RESPONDERS, choose_backend, start_backend
from uservlm_ros.core import addressee as addressing
from uservlm_ros.core import health
from uservlm_ros.core.errors import UservlmError
from uservlm_ros.core.health import health_params
from uservlm_ros.core.parameters import Param, config_of, params_of
from uservlm_ros.core.request_queue import RequestQueue
from uservlm_ros.core.worker import Worker
from uservlm_ros.ros import topics
from uservlm_ros.ros.conversions import image_to_rgb, stage_timings, stamp_to_seconds
from uservlm_ros.ros.diagnostics import log_running, loss_counter
from uservlm_ros.ros.lifecycle import ModelNode
from uservlm_ros.ros.node_main import node_main
from uservlm_ros.ros.param_declare import AUTOSTART
from uservlm_ros.ros.qos import FEEDBACK_QOS, LATCHED_QOS, REQUEST_QOS, SENSOR_QOS
from uservlm_ros.ros.respond_client import request_id_of

PARAMS: list[Param] = [
    AUTOSTART,
    RESPONDERS.choice_param("responder.backend", "paligemma", "Who writes the answers"),
    *params_of(ResponderConfig, ""),
    *params_of(PipelineSettings, ""),
    *RESPONDERS.params(),
    # Answers take seconds on a CPU; one question for two minutes means the model hangs.
    *health_params(max_processing_ms=30000.0, hang_s=120.0),
]


@dataclass
class Job:
    """A question and, for action requests, the goal waiting for its final Response."""

    question: Question
    goal: Any = None  # ServerGoalHandle for action requests
    done: Future | None = None  # resolved with the final Response (action requests)

    @property
    def request_id(self) -> str:
        return self.question.request_id

    def cancel_requested(self) -> bool:
        return self.goal is not None and self.goal.is_cancel_requested


class VlmResponderNode(ModelNode):
    def __init__(self, **kwargs) -> None:
        super().__init__("vlm_responder_node", PARAMS, **kwargs)
        log = self.get_logger()
        self.responder = Responder(
            lambda: config_of(ResponderConfig, "", self.params),
            image_to_rgb,
            self.resolve_topic_name(topics.IMAGE),
            lambda counter: self.diagnostics.count(counter),
            log.info,
            log.warning,
        )
        self.queue: RequestQueue[Job] = RequestQueue(self.params["responder.queue_size"])
        self._worker: Worker[Job] = Worker(
            self.queue.get, self._work_on, "responder", self._job_failed
        )
        self.workers = [self._worker]
        self._action: ActionServer | None = None

    # ------------------------------------------------------------------ lifecycle

    def _configure(self) -> TransitionCallbackReturn:
        p = self.params
        log = self.get_logger()
        name, warning = choose_backend(p)
        if warning:
            log.warning(warning)
        try:
            backend = start_backend(name, p, log.info, log.warning)
        except UservlmError as error:
            log.error(f"cannot configure the responder: {error}")
            return TransitionCallbackReturn.FAILURE
        self.responder.backend_name = name
        self.responder.pipeline = ResponderPipeline(
            backend, lambda: config_of(PipelineSettings, "", self.params), self._log_blocked
        )
        if self.queue.capacity != p["responder.queue_size"]:
            self.queue = RequestQueue(p["responder.queue_size"])
            self._worker = Worker(self.queue.get, self._work_on, "responder", self._job_failed)
            self.workers = [self._worker]
        self.start_diagnostics(name)
        return TransitionCallbackReturn.SUCCESS

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
        mode = self.params["responder.mode"]
        state = f"active ({self.responder.backend_name}, default mode {mode})"
        log_running(
            self, state, "{} or {} -> {}", topics.QUESTION, topics.RESPOND_ACTION, topics.RESPONSE
        )
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        result = super().on_deactivate(state)  # answers what is queued, then drops the I/O
        if self._action is not None:
            self._action.destroy()
            self._action = None
        return result

    def _release_model(self) -> None:
        self.responder.pipeline = None

    def _stop_work(self) -> None:
        """Stop taking questions; every waiting one still gets its (error) Response."""
        self.queue.close()
        super()._stop_work()
        for job in self.queue.drain():
            self._finish(job, self.responder.error(job.question, "the responder is shutting down"))

    def _extra_health(self) -> list[health.Verdict]:
        return [health.judge_queue("question", len(self.queue), self.queue.capacity)]

    # ------------------------------------------------------------------ inputs

    def _on_image(self, msg: Image) -> None:
        self.responder.see_image(msg, msg.header.stamp, stamp_to_seconds(msg.header.stamp))
        self.diagnostics.count("images_received")

    def _on_profile(self, msg: UserProfile) -> None:
        self.responder.see_profile(_asker(msg))

    def _on_question(self, msg: String) -> None:
        self._submit(Job(self.responder.question(msg.data, source="topic")))

    async def _execute_goal(self, goal_handle) -> Respond.Result:
        request = goal_handle.request
        question = self.responder.question(
            request.question,
            request.track_id,
            request.mode,
            request.max_new_tokens,
            request.adapter,
            request_id_of(goal_handle.goal_id.uuid),
            request.source,
            request.person_id,
        )
        job = Job(question, goal_handle, Future())
        immediate = self._submit(job)
        response = immediate if immediate is not None else await job.done
        if response.error == "":
            goal_handle.succeed()
        elif goal_handle.is_cancel_requested:
            goal_handle.canceled()
        else:
            goal_handle.abort()
        return Respond.Result(response=response)

    def _submit(self, job: Job) -> Response | None:
        """Queue a job; returns its error Response when it cannot be queued (also published)."""
        self.diagnostics.count("questions")
        problem = self.responder.problem(job.question)
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
        return self._finish(job, self.responder.error(job.question, problem))

    # ------------------------------------------------------------------ answering

    def _work_on(self, job: Job) -> None:
        self.diagnostics.values["queue_length"] = len(self.queue)

        def on_partial(text: str, tokens: int) -> None:
            if job.goal is not None:
                job.goal.publish_feedback(
                    Respond.Feedback(partial_text=text, tokens_generated=tokens)
                )

        def on_early(reply: Reply) -> None:
            self._response_pub.publish(self._message(reply))

        reply = self.responder.answer(
            job.question,
            job.cancel_requested,
            lambda: not self._worker.state().running,
            on_partial,
            on_early,
        )
        self._finish(job, reply)

    def _job_failed(self, job: Job | None, error: Exception) -> None:
        """Whatever the model or a conversion does, the question still gets its Response."""
        if job is None:
            return
        self.get_logger().error(f"[{job.request_id}] generation failed: {error!r}")
        self.diagnostics.count("generation_errors")
        self._finish(job, self.responder.error(job.question, f"generation failed: {error}"))

    def _log_blocked(self, question: Question, reason: str) -> None:
        self.diagnostics.count("guard_replaced")
        self.get_logger().warning(
            f"[{question.request_id}] fairness guard replaced the answer ({reason})"
        )

    def _message(self, reply: Reply) -> Response:
        question = reply.question
        response = Response(
            header=Header(stamp=self.get_clock().now().to_msg()),
            request_id=question.request_id,
            track_id=reply.track_id,
            person_id=reply.person_id,
            question=question.question,
            source=question.source,
            final=reply.final,
            mode=question.mode,
            responder=reply.responder,
            error=reply.error,
            addressee=reply.addressee,
            timings=stage_timings(reply.timings_ms),
        )
        if reply.image_roi is not None:
            response.image_roi = [float(v) for v in reply.image_roi]
        if reply.camera_stamp is not None:
            response.camera_stamp = reply.camera_stamp
        if reply.utterance is not None:
            response.text = reply.utterance.text
            response.sentiment = reply.utterance.sentiment
            response.gesture = reply.utterance.gesture
        return response

    def _finish(self, job: Job, reply: Reply) -> Response:
        """Publish the one final Response of a job and hand it to a waiting action goal."""
        response = self._message(reply)
        self._response_pub.publish(response)
        self.diagnostics.count("answered" if not response.error else "answered_with_error")
        if job.done is not None and not job.done.done():
            job.done.set_result(response)
            # The goal's coroutine awaits this future; the executor polls it only when it wakes
            # (the next timer or message, up to a second later), so wake it now.
            executor = self.executor
            # An executor being shut down may already have destroyed its guard condition
            # (rclpy's InvalidHandle, a RuntimeError): then nothing waits to be woken.
            with contextlib.suppress(RuntimeError):
                if executor is not None:
                    executor.wake()
        return response


def _asker(profile: UserProfile) -> Asker:
    estimates = (profile.age_group, profile.gender, profile.emotion)  # never ethnicity
    seen = addressing.Seen(
        profile.track_id,
        tuple(float(v) for v in profile.roi),
        bool(profile.engaged),
        stamp_to_seconds(profile.header.stamp),
        float(profile.engagement),
        profile.person_id,
    )
    labels = {e.name: e.label for e in estimates if e.known and e.name}
    return Asker(seen, profile.profile_text, labels)


NODE = VlmResponderNode  # what a container (nodes/container.py) builds under this node's name
# Every callback is short (answers are made on the worker thread; the action's execute
# callback awaits them): one executor thread costs about half the CPU of several, most of
# it spent on the 15 camera frames a second (docs/benchmarks.md).
main = node_main(NODE, single_threaded=True)

if __name__ == "__main__":
    main()
