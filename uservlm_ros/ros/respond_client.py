"""The one client of the Respond action: `uservlm ask`, the console, the demo and the speech node.

A call is a cancellable stream: `events()` yields `Partial` texts as the responder streams them
and ends with exactly one final `Response`, also when the goal is rejected, the responder is
missing, never acknowledges the goal or does not answer in time (then `Response.error` says why).
The client enforces those deadlines itself, so a caller that only adds a done-callback (the
speech node) gets its final Response too. The request id is known when the goal is sent (the
goal's UUID), so a caller can tie its own records (a transcript) to the answer.

The node given to the client must be spun by an executor in another thread (every uservlm node
is; `uservlm ask` spins its own).
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from rclpy.action import ActionClient
from rclpy.node import Node
from rclpy.task import Future
from unique_identifier_msgs.msg import UUID
from uservlm.action import Respond
from uservlm.msg import Response

from uservlm_ros.ros import topics
from uservlm_ros.ros.qos import FEEDBACK_QOS, REQUEST_QOS

DEFAULT_TIMEOUT_S = 120.0
# The responder acknowledges a goal as soon as its executor takes the request (milliseconds).
# An acknowledgement can still be lost: Fast DDS drops a service reply when the server has not
# yet matched the new client's reply reader (it waits 100 ms for it), and rclpy then never runs
# that goal. Without a deadline such a question would wait DEFAULT_TIMEOUT_S for nothing.
ACCEPT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Partial:
    """The answer generated so far (Respond feedback)."""

    text: str
    tokens: int


def request_id_of(goal_uuid: bytes | list[int]) -> str:
    """The request id the responder gives a goal: the first 12 hex digits of its UUID."""
    return bytes(goal_uuid).hex()[:12]


class RespondCall:
    """One question in flight; see the module docstring."""

    def __init__(
        self,
        request_id: str,
        question: str,
        track_id: int,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        accept_timeout_s: float = ACCEPT_TIMEOUT_S,
        person_id: str = "",
        source: str = "",
    ) -> None:
        self.request_id = request_id
        self.question = question
        self.track_id = track_id
        self.person_id = person_id
        self.source = source
        self._sent = time.monotonic()
        self._timeout_s = timeout_s
        self._accept_timeout_s = accept_timeout_s
        self._events: queue.Queue[Partial | Response] = queue.Queue()
        self._final: Response | None = None
        self._lock = threading.Lock()
        self._goal_handle = None
        self._cancel_wanted = False
        self._callbacks: list[Callable[[Response], None]] = []
        self._tokens = 0  # the most tokens a partial passed on had

    @property
    def done(self) -> bool:
        return self._final is not None

    def events(self, timeout_s: float = DEFAULT_TIMEOUT_S) -> Iterator[Partial | Response]:
        """Partial texts as they come, then the final Response (always exactly one)."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                event = self._events.get(timeout=max(deadline - time.monotonic(), 0.0))
            except queue.Empty:
                self._finish(self._error(f"no answer within {timeout_s:g} s"))
                event = self._events.get()
            yield event
            if isinstance(event, Response):
                return

    def result(self, timeout_s: float = DEFAULT_TIMEOUT_S) -> Response:
        """Wait for the final Response (partials are skipped)."""
        for event in self.events(timeout_s):
            if isinstance(event, Response):
                return event
        raise AssertionError("events() always ends with a Response")

    def cancel(self) -> None:
        """Ask the responder to stop; the final Response then says it was cancelled."""
        with self._lock:
            self._cancel_wanted = True
            handle = self._goal_handle
        if handle is not None and not self.done:
            handle.cancel_goal_async()

    def add_done_callback(self, callback: Callable[[Response], None]) -> None:
        """Call `callback(final Response)` once it exists (at once if it does already)."""
        with self._lock:
            if self._final is None:
                self._callbacks.append(callback)
                return
        callback(self._final)

    def _enforce_deadlines(self, now: float) -> None:
        """Finish the call if the responder missed a deadline (called by the client's watch)."""
        waited = now - self._sent
        with self._lock:
            acknowledged = self._goal_handle is not None
        if not acknowledged and waited > self._accept_timeout_s:
            self._abandon(
                f"the responder did not acknowledge the question within "
                f"{self._accept_timeout_s:g} s (its reply was lost or it is stalled); ask again"
            )
        elif waited > self._timeout_s:
            self._abandon(f"no answer within {self._timeout_s:g} s")

    def _abandon(self, reason: str) -> None:
        """Finish with an error Response and cancel the goal: the responder need not finish an
        answer nobody waits for (a goal acknowledged later is cancelled by `_accepted`)."""
        self._finish(self._error(reason))
        with self._lock:
            handle = self._goal_handle
        if handle is not None:
            handle.cancel_goal_async()

    # -- fed by the client's ROS callbacks

    def _feedback(self, feedback: Respond.Feedback) -> None:
        # Executor threads can hand two feedback messages over out of order: a partial with no
        # more tokens than one already passed on is older, not news.
        with self._lock:
            stale = 0 < feedback.tokens_generated <= self._tokens
            self._tokens = max(self._tokens, feedback.tokens_generated)
        if not self.done and not stale:
            self._events.put(Partial(feedback.partial_text, feedback.tokens_generated))

    def _accepted(self, goal_handle) -> None:
        with self._lock:
            self._goal_handle = goal_handle
            # Acknowledged after its deadline: nobody waits for this answer any more.
            cancel = self._cancel_wanted or self._final is not None
        if cancel:
            goal_handle.cancel_goal_async()

    def _finish(self, response: Response) -> None:
        with self._lock:
            if self._final is not None:
                return  # the first final Response wins (e.g. a late result after a timeout)
            self._final = response
            callbacks, self._callbacks = self._callbacks, []
        self._events.put(response)
        for callback in callbacks:
            callback(response)

    def _error(self, error: str) -> Response:
        return Response(
            request_id=self.request_id,
            track_id=self.track_id,
            person_id=self.person_id,
            question=self.question,
            source=self.source,
            final=True,
            error=error,
        )


class GoalSafeActionClient(ActionClient):
    """rclpy's ActionClient with a send_goal_async whose future always completes.

    rclpy 9.1's send_goal_async registers the goal reply's future under the client's lock, then
    creates a second future and registers it again outside the lock. When an executor thread
    handles the reply in between (a fast server, a loaded host), it completes the first future
    and the returned one never completes: the goal runs on the server, unseen by the caller
    (ros2/rclpy#1123 and its backport). This registers one future, under the lock that taking
    the reply also holds. Every action client in uservlm uses it.
    """

    def send_goal_async(self, goal, feedback_callback=None, goal_uuid=None) -> Future:
        if not isinstance(goal, self._action_type.Goal):
            raise TypeError(f"expected a {self._action_type.Goal.__name__} goal, got {goal!r}")
        request = self._action_type.Impl.SendGoalService.Request()
        request.goal_id = self._generate_random_uuid() if goal_uuid is None else goal_uuid
        request.goal = goal
        if feedback_callback is not None:  # before sending: a first partial can beat the reply
            self._feedback_callbacks[bytes(request.goal_id.uuid)] = feedback_callback
        future = Future()
        with self._lock:
            sequence_number = self._client_handle.send_goal_request(request)
            self._pending_goal_requests[sequence_number] = future
            self._goal_sequence_number_to_goal_id[sequence_number] = request.goal_id
            future.add_done_callback(self._remove_pending_goal_request)
            self.add_future(future)  # the executor then knows about it
        return future


class RespondClient:
    """Sends Respond goals for a node; see the module docstring."""

    def __init__(
        self,
        node: Node,
        action: str = topics.RESPOND_ACTION,
        accept_timeout_s: float = ACCEPT_TIMEOUT_S,
    ) -> None:
        self._node = node
        self._accept_timeout_s = accept_timeout_s
        # Calls waiting for their final Response, watched by one thread for their deadlines;
        # the thread sleeps while there are none.
        self._pending: list[RespondCall] = []
        self._pending_changed = threading.Condition()
        self._closed = False
        self._watch = threading.Thread(target=self._watch_deadlines, daemon=True)
        self._watch.start()
        self._client = GoalSafeActionClient(
            node,
            Respond,
            action,
            # As the server's: a burst of goals must queue, not overwrite each other.
            goal_service_qos_profile=REQUEST_QOS,
            result_service_qos_profile=REQUEST_QOS,
            feedback_sub_qos_profile=FEEDBACK_QOS,
        )

    def wait_for_server(self, timeout_s: float) -> bool:
        """True once the responder's services and its feedback topic are matched (the feedback
        topic matches separately: without it the first partials of a question go unseen)."""
        deadline = time.monotonic() + timeout_s
        if not self._client.wait_for_server(timeout_sec=timeout_s):
            return False
        feedback = f"{self._client._action_name}/_action/feedback"
        while self._node.count_publishers(feedback) < 1:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def ask(
        self,
        question: str,
        *,
        track_id: int = 0,
        person_id: str = "",
        mode: str = "",
        adapter: str = "",
        max_new_tokens: int = 0,
        source: str = "",
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> RespondCall:
        """Send one question for the user on `track_id` or `person_id` (neither: the addressee);
        the call ends with an error Response if the responder does not acknowledge it within
        ACCEPT_TIMEOUT_S or does not answer within `timeout_s`."""
        goal_uuid = uuid.uuid4().bytes
        call = RespondCall(
            request_id_of(goal_uuid),
            question,
            track_id,
            timeout_s,
            self._accept_timeout_s,
            person_id,
            source,
        )
        if not self._client.server_is_ready():
            call._finish(call._error(f"no responder serves {self._client._action_name}"))
            return call
        goal = Respond.Goal(
            question=question,
            track_id=track_id,
            person_id=person_id,
            mode=mode,
            max_new_tokens=max_new_tokens,
            adapter=adapter,
            source=source,
        )
        sent = self._client.send_goal_async(
            goal,
            feedback_callback=lambda msg: call._feedback(msg.feedback),
            goal_uuid=UUID(uuid=list(goal_uuid)),
        )
        sent.add_done_callback(lambda future: self._on_goal_response(call, future))
        with self._pending_changed:
            self._pending.append(call)
            self._pending_changed.notify()
        return call

    def _watch_deadlines(self) -> None:
        while True:
            with self._pending_changed:
                self._pending = [call for call in self._pending if not call.done]
                while not self._pending and not self._closed:
                    self._pending_changed.wait()
                if self._closed:
                    return
                pending = list(self._pending)
            now = time.monotonic()
            for call in pending:
                call._enforce_deadlines(now)
            time.sleep(0.1)

    def _on_goal_response(self, call: RespondCall, future) -> None:
        try:
            goal_handle = future.result()
        except Exception as error:  # transport failure: still one final Response
            call._finish(call._error(f"the goal could not be sent: {error}"))
            return
        if not goal_handle.accepted:
            call._finish(call._error("the responder rejected the goal"))
            return
        call._accepted(goal_handle)
        goal_handle.get_result_async().add_done_callback(
            lambda result: self._on_result(call, result)
        )

    def _on_result(self, call: RespondCall, future) -> None:
        try:
            call._finish(future.result().result.response)
        except Exception as error:
            call._finish(call._error(f"the result could not be read: {error}"))

    def abandon_pending(self, reason: str) -> None:
        """Finish every call still waiting with an error Response saying `reason`, and cancel
        their goals (a node that stops asking: its callers must not wait for those answers).

        The client itself stays (ask again at any time): destroying an action client while an
        executor thread builds its wait set kills that thread (rclpy); `destroy` it with its
        node."""
        with self._pending_changed:
            pending, self._pending = self._pending, []
        for call in pending:
            call._abandon(reason)

    def destroy(self) -> None:
        """Abandon what is pending, stop the deadline watch and release the action client (it
        holds its node: the node stays in the graph until then). Only where no executor spins
        the node any more, e.g. in the node's destroy_node."""
        self.abandon_pending("the client was destroyed before the answer came")
        with self._pending_changed:
            self._closed = True
            self._pending_changed.notify()
        self._client.destroy()
