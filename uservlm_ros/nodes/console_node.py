"""console_node: the operator console, a web page that shows the graph live and steers it.

    python -m uservlm_ros.nodes.console_node --ros-args -p port:=8088
    uservlm console                       # the same, stand-alone

Subscribes uservlm/user_profile, uservlm/response, uservlm/speech_events, uservlm/transcript,
/diagnostics, /parameter_events (the profiler's enable.* switches) and, only while a page is
connected, the camera (camera/image_raw) and uservlm/faces: each frame is drawn with its faces
and their profiles (core/overlay.py, the debug image's drawing) and sent on as JPEG, at most
camera.max_fps. Asks questions through the Respond action (source "console"), sets the
profiler's enable.* parameters through its SetParameters service and makes it forget persons
through uservlm/forget_persons (ForgetPersons). /diagnostics is shared by the whole domain: the
page shows the nodes of this node's namespace only. The web server and what the page shows live
in uservlm_ros/console/, which sees plain Python data only: this node converts every message
(ros/message_data.py) before handing it on.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rcl_interfaces.msg import Parameter, ParameterEvent, ParameterType, ParameterValue
from rcl_interfaces.srv import GetParameters, SetParameters
from rclpy.expand_topic_name import expand_topic_name
from rclpy.node import Node
from rclpy.qos import qos_profile_parameter_events
from sensor_msgs.msg import Image
from uservlm.msg import (
    AttributeEstimate,
    FaceArray,
    Response,
    SpeechEvent,
    Transcript,
    UserProfile,
)
from uservlm.srv import ForgetPersons

from uservlm_ros.console.camera import CameraConfig, FrameThrottle, encode_jpeg
from uservlm_ros.console.privacy import PrivacySwitches, attribute_of, switch_parameter
from uservlm_ros.console.security import access_token, announcement
from uservlm_ros.console.server import ConsoleServer, Forgotten
from uservlm_ros.console.state import ConsoleState, StateConfig
from uservlm_ros.core import labels
from uservlm_ros.core.errors import UservlmError
from uservlm_ros.core.frame_pairing import FramePairing
from uservlm_ros.core.overlay import draw_people
from uservlm_ros.core.parameters import Param, config_of, params_of
from uservlm_ros.ros import message_data, topics
from uservlm_ros.ros.conversions import faces_to_people, image_to_rgb
from uservlm_ros.ros.diagnostics import Diagnostics, log_rejection
from uservlm_ros.ros.node_main import node_main
from uservlm_ros.ros.param_declare import node_parameters
from uservlm_ros.ros.qos import LATCHED_QOS, RELIABLE_QOS, REQUEST_QOS, SENSOR_QOS
from uservlm_ros.ros.respond_client import Partial, RespondCall, RespondClient

PARAMS = [
    Param(
        "host",
        "127.0.0.1",
        "Address to listen on; any non-loopback address (0.0.0.0, a LAN address for Pepper's "
        "tablet) requires the token on every request",
    ),
    Param("port", 8088, "TCP port of the page (0 = any free port, logged)", min=0, max=65535),
    Param(
        "token_file",
        "",
        'File whose first line is the access token (>= 16 characters); "" = a random token, '
        "when the host is not loopback, printed on the terminal only (never logged)",
    ),
    Param(
        "profiler_node",
        "user_profiler_node",
        "The profiler whose enable.* parameters the privacy switches set",
    ),
    *params_of(CameraConfig, "camera"),
    *params_of(StateConfig, ""),
]


class ConsoleNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("console_node", **kwargs)
        p = self.params = node_parameters(self, PARAMS, self._apply_live)
        token = access_token(p["token_file"], p["host"])
        self.camera = camera = config_of(CameraConfig, "camera", p)
        self.state = ConsoleState(config_of(StateConfig, "", p), namespace=self.get_namespace())
        self.state.set_camera(
            enabled=camera.enabled,
            topic=self.resolve_topic_name(topics.IMAGE),
            max_fps=camera.max_fps,
        )
        self.diagnostics = Diagnostics(self, hardware_id="console")
        self.respond = RespondClient(self)
        self._rejections: dict[str, float] = {}

        self.profiler = expand_topic_name(p["profiler_node"], self.get_name(), self.get_namespace())
        self._set_client = self.create_client(SetParameters, f"{self.profiler}/set_parameters")
        self._get_client = self.create_client(GetParameters, f"{self.profiler}/get_parameters")
        self.privacy = PrivacySwitches(self.state, self.profiler)
        self._forget_client = self.create_client(ForgetPersons, topics.FORGET_PERSONS)
        self.create_timer(1.0, self._watch_profiler)

        # for the frame labels: the latest profile of each track, and when it arrived
        # (monotonic, for the expiry; the state's wall clock, for the privacy switches)
        self._profiles: dict[int, tuple[UserProfile, float, float]] = {}
        self.create_subscription(UserProfile, topics.PROFILE, self._on_profile, LATCHED_QOS)
        self.create_subscription(SpeechEvent, topics.SPEECH_EVENTS, self._on_speech, REQUEST_QOS)
        # the console sees plain data only: each message is converted first
        state, data = self.state, message_data
        for kind, topic, convert, handle, qos in (
            (Response, topics.RESPONSE, data.response, state.on_response, REQUEST_QOS),
            (Transcript, topics.TRANSCRIPT, data.transcript, state.on_transcript, RELIABLE_QOS),
            (DiagnosticArray, topics.DIAGNOSTICS, data.statuses, state.on_diagnostics, 10),
        ):
            self.create_subscription(kind, topic, lambda m, c=convert, h=handle: h(c(m)), qos)
        self.create_subscription(
            ParameterEvent, "/parameter_events", self._on_parameters, qos_profile_parameter_events
        )

        # The camera and the faces are subscribed only while a page is connected; the server's
        # thread asks for the change, the executor makes it.
        self._throttle = FrameThrottle(camera.max_fps)
        self._camera_subs: list = []
        self._frames: FramePairing[Image] = FramePairing()
        self._pages = 0
        self._camera_sync = self.create_guard_condition(self._sync_camera)

        self.server = ConsoleServer(
            self.state,
            self,
            host=p["host"],
            port=p["port"],
            token=token,
            on_clients=self._on_pages,
            log=self.get_logger().warning,
        )
        self.server.start()
        self.diagnostics.set_status(DiagnosticStatus.OK, f"serving {self.server.port}")
        lines, printed = announcement(
            self.server.url, self.server.port, p["host"], token, p["token_file"]
        )
        for line in lines:
            self.get_logger().info(line)
        if printed:
            print(printed, flush=True)

    # -- the page's actions (called on the web server's thread; never block)

    def ask(self, question: str, track_id: int, person_id: str) -> str:
        call = self.respond.ask(question, track_id=track_id, person_id=person_id, source="console")
        self.state.asked(call.request_id, question, track_id, "console", person_id)
        self.diagnostics.count("questions")
        threading.Thread(
            target=self._follow, args=(call,), name=f"console_ask_{call.request_id}", daemon=True
        ).start()
        return call.request_id

    def _follow(self, call: RespondCall) -> None:
        """Stream the answer into the page (one short-lived thread per question)."""
        for event in call.events():
            if isinstance(event, Partial):
                self.state.on_partial(call.request_id, event.text, event.tokens)
            else:
                self.state.on_response(message_data.response(event))

    def set_privacy(self, attribute: str, enabled: bool) -> concurrent.futures.Future[str]:
        outcome: concurrent.futures.Future[str] = concurrent.futures.Future()
        if not self._set_client.service_is_ready():
            outcome.set_result(self.privacy.unreachable(attribute))
            return outcome
        self.privacy.asked(attribute)
        value = ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=enabled)
        request = SetParameters.Request(
            parameters=[Parameter(name=switch_parameter(attribute), value=value)]
        )

        def done(future) -> None:
            try:
                result = future.result().results[0]
                reason = "" if result.successful else (result.reason or "refused, no reason given")
            except Exception as error:  # the service went away mid-call
                reason = f"the call failed: {error}"
            self.privacy.answered(attribute, enabled, reason)
            self.diagnostics.count("privacy_refused" if reason else "privacy_set")
            if not outcome.done():
                outcome.set_result(reason)

        self._set_client.call_async(request).add_done_callback(done)
        return outcome

    def forget(self, person_id: str) -> concurrent.futures.Future[Forgotten]:
        if not self._forget_client.service_is_ready():
            name = self.resolve_service_name(topics.FORGET_PERSONS)
            raise UservlmError(f"no profiler serves {name} (is it running?)")
        outcome: concurrent.futures.Future[Forgotten] = concurrent.futures.Future()

        def done(future) -> None:
            try:
                answer = future.result()
            except Exception as error:  # the service went away mid-call
                outcome.set_exception(UservlmError(f"the call failed: {error}"))
                return
            if answer.success:
                self.state.forgot(person_id)
            self.diagnostics.count("persons_forgotten", answer.forgotten)
            outcome.set_result(Forgotten(answer.success, answer.forgotten, answer.message))

        request = ForgetPersons.Request(person_id=person_id)
        self._forget_client.call_async(request).add_done_callback(done)
        return outcome

    # -- ROS callbacks

    def _on_speech(self, msg: SpeechEvent) -> None:
        self.state.on_speech_event(message_data.speech_event(msg))

    def _on_parameters(self, event: ParameterEvent) -> None:
        if event.node != self.profiler:
            return
        for parameter in [*event.new_parameters, *event.changed_parameters]:
            attribute = attribute_of(parameter.name)
            if attribute is not None:
                self.state.set_privacy(attribute, enabled=parameter.value.bool_value)

    def _watch_profiler(self) -> None:
        """Follow whether the profiler is up; read its switches whenever it (re)appears."""
        if self.privacy.watch(self._get_client.service_is_ready()):
            names = [switch_parameter(a) for a in labels.ATTRIBUTES]
            future = self._get_client.call_async(GetParameters.Request(names=names))
            future.add_done_callback(self._on_privacy_values)
        self.diagnostics.values["pages"] = self._pages
        self.diagnostics.values["frames_sent"] = self.server.frames_sent

    def _on_privacy_values(self, future) -> None:
        try:
            values = future.result().values
        except Exception as error:
            self.get_logger().warning(f"could not read {self.profiler}'s enable.*: {error}")
            self.privacy.read(None)
            return
        pairs = zip(labels.ATTRIBUTES, values, strict=False)
        bools = {a: v.bool_value for a, v in pairs if v.type == ParameterType.PARAMETER_BOOL}
        self.privacy.read(bools)

    def _on_pages(self, count: int) -> None:
        self._pages = count
        self._camera_sync.trigger()

    def _apply_live(self, changed: dict) -> None:
        self.camera = camera = config_of(CameraConfig, "camera", self.params)
        self.state.config = config_of(StateConfig, "", self.params)
        self._throttle.interval = 1.0 / camera.max_fps
        self.state.set_camera(enabled=camera.enabled, max_fps=camera.max_fps)
        if "camera.enabled" in changed:
            self._camera_sync.trigger()

    def _sync_camera(self) -> None:
        wanted = self.camera.enabled and self._pages > 0
        if wanted and not self._camera_subs:
            self._camera_subs = [
                self.create_subscription(Image, topics.IMAGE, self._on_image, SENSOR_QOS),
                self.create_subscription(FaceArray, topics.FACES, self._on_faces, RELIABLE_QOS),
            ]
        elif not wanted and self._camera_subs:
            for subscription in self._camera_subs:
                self.destroy_subscription(subscription)
            self._camera_subs = []
            self._frames.clear()
            self.state.set_camera(streaming=False, fps=0.0)

    def _on_profile(self, msg: UserProfile) -> None:
        self.state.on_profile(message_data.profile(msg))
        now = time.monotonic()
        self._profiles[msg.track_id] = (msg, now, time.time())
        expiry = self.state.config.people_expiry_s
        for track in [t for t, (_, seen, _) in self._profiles.items() if now - seen > expiry]:
            del self._profiles[track]

    def _labels(self) -> dict[int, UserProfile]:
        """The profiles to draw on a frame, without an attribute switched off after the profile
        arrived (as on the cards: a settled person's next profile may be a while away)."""
        switched_off = self.state.switched_off()
        for msg, _, arrived in self._profiles.values():
            for attribute, when in switched_off.items():
                if arrived <= when and getattr(msg, attribute).known:
                    # in place: hidden until the track's next profile, even if switched back on
                    withheld = AttributeEstimate(
                        name=attribute, label="unknown", known=False, abstain_reason="disabled"
                    )
                    setattr(msg, attribute, withheld)
        return {track: msg for track, (msg, _, _) in self._profiles.items()}

    def _on_image(self, msg: Image) -> None:
        if not self._camera_subs:
            return
        if self._frames.faces_expected():
            self._frames.add((msg.header.stamp.sec, msg.header.stamp.nanosec), msg)
        elif self._throttle.ready():  # nobody finds faces: the plain frame
            self._show(msg, None)

    def _on_faces(self, msg: FaceArray) -> None:
        """Show the frame these faces were found in, drawn with them (when it is time)."""
        image = self._frames.take((msg.header.stamp.sec, msg.header.stamp.nanosec))
        if image is not None and self._throttle.ready():
            self._show(image, msg)

    def _show(self, image: Image, faces: FaceArray | None) -> None:
        try:
            rgb = image_to_rgb(image)
            if faces is not None and faces.faces:
                rgb = draw_people(rgb, faces_to_people(faces, self._labels()))
            jpeg = encode_jpeg(rgb, self.camera.max_width, self.camera.jpeg_quality)
        except (UservlmError, ValueError) as error:
            self.diagnostics.count("frames_rejected")
            log_rejection(self, self._rejections, f"cannot show a camera frame: {error}")
            return
        self.server.show_frame(jpeg)
        self.state.set_camera(streaming=True, fps=self._throttle.fps())

    def destroy_node(self) -> None:
        server = getattr(self, "server", None)  # None when the constructor failed before it
        if server is not None:
            server.stop()
        super().destroy_node()


NODE = ConsoleNode  # what a container (nodes/container.py) builds under this node's name
# Every callback is short (the answer streams on its own thread): one executor thread.
main = node_main(NODE, single_threaded=True)

if __name__ == "__main__":
    main()
