"""`uservlm demo` (`make demo`): the whole system on the embedded default, then a report.

A simulated Pepper on loopback serves the two-person camera sequence (ALVideoDevice), hears
through its microphones (ALAudioDevice) and records what the robot is asked to say and do. The
deployment `config/demo.yaml` runs as node processes over DDS: camera_node (Pepper's camera over
NAOqi), face_crop_node (BlazeFace), user_profiler_node (attributes), vlm_responder_node (the
clearly labelled fallback template responder, or the VLM with --vlm-model), naoqi_bridge_node
(speech and gestures on the simulated Pepper) and speech_node (Pepper's microphones -> Whisper ->
the Respond action). This driver waits for both users' profiles, then speaks recorded questions
into the simulated Pepper's microphones (and a burst of noise, which must not become a question),
and prints a transcript; the report (Markdown with annotated frames and a latency chart) goes to
a folder it names.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TextIO

from uservlm_ros.core.errors import ConfigError, UservlmError
from uservlm_ros.core.metrics import percentiles
from uservlm_ros.core.presence import answer_for
from uservlm_ros.core.profile_schedule import ScheduleConfig
from uservlm_ros.demo.persons_seen import (
    Sighting,
    describe,
    identity_errors,
    persons_section,
    persons_seen,
    scene_faces,
)
from uservlm_ros.ros import topics


@dataclass(frozen=True)
class SpokenQuestion:
    clip: str  # a WAV file of uservlm_ros/sim/speech
    text: str  # what was said (the reference)


# Crops fused into a profile before the questions start: the profiler's own "settled" (its
# schedule profiles a settled person once a second, so waiting for more took a minute).
MIN_OBSERVATIONS = ScheduleConfig().settle_observations
SPEECH_S_PER_WORD = 0.2  # the simulated robot talks (and hears itself) this long per word
CONSOLE_PORT = 8088  # the console's page, unless the port is taken (then any free one)

QUESTIONS = (
    SpokenQuestion("hello_how_are_you.wav", "Hello, how are you today?"),
    SpokenQuestion("what_do_you_see.wav", "What do you see in front of you?"),
    SpokenQuestion("tell_me_a_joke.wav", "Can you tell me a joke?"),
    SpokenQuestion("describe_my_clothes.wav", "Could you describe what I'm wearing?"),
)
NOISE_S = 2.0  # then this much noise (a fan, traffic) goes into the microphones: no question


@dataclass
class Exchange:
    said: str  # what the user said (reference)
    speech_end: float  # wall clock: end of the user's speech in the microphones
    heard: str = ""  # the transcript
    transcript: object = None  # uservlm/Transcript
    transcript_at: float | None = None  # wall clock: transcript made (question sent)
    request_id: str = ""
    track_id: int = 0
    person_id: str = ""  # who the answer went to (the track's anonymous person without identity)
    addressee: str = ""  # how the responder chose them (Response.addressee)
    response: object = None  # uservlm/Response (final)
    first_sentence_at: float | None = None
    speech_started_at: float | None = None
    speech_finished: bool = False


class _Observer:
    """The demo's own node: listens to the graph and drives the questions."""

    def __init__(self) -> None:
        import rclpy
        from rclpy.executors import MultiThreadedExecutor
        from sensor_msgs.msg import Image
        from uservlm.msg import FaceArray, Response, SpeechEvent, Transcript, UserProfile

        from uservlm_ros.ros.qos import LATCHED_QOS, RELIABLE_QOS, SENSOR_QOS
        from uservlm_ros.ros.respond_client import RespondClient
        from uservlm_ros.ros.spin import SpinThread

        self.node = rclpy.create_node("uservlm_demo")
        self.lock = threading.Lock()
        self.profiles: dict[int, UserProfile] = {}
        self.sightings: list[Sighting] = []  # one per profile received, for the report
        self.profile_latency_ms: list[float] = []
        self._newest_profiled = 0.0  # camera stamp of the newest frame profiled, s
        # camera -> profile is measured from the first question on: start-up (Whisper loading,
        # every model warming up on the same 2 cores) is not the steady state the chart shows
        self.measuring_profiles = False
        self.stage_ms: dict[str, list[float]] = {}
        # face count -> (camera Image, its FaceArray): the latest frame with that many faces
        self.frames_with: dict[int, tuple[object, object]] = {}
        self.images: dict[tuple[int, int], object] = {}  # camera stamp -> the recent frames
        self.responses: dict[str, object] = {}
        self.early: dict[str, float] = {}
        self.speech: list[tuple[float, object]] = []  # (when received, SpeechEvent)
        self.transcripts: list = []
        self.node.create_subscription(UserProfile, topics.PROFILE, self._on_profile, LATCHED_QOS)
        self.node.create_subscription(FaceArray, topics.FACES, self._on_faces, RELIABLE_QOS)
        self.node.create_subscription(Image, topics.IMAGE, self._on_image, SENSOR_QOS)
        self.node.create_subscription(Response, topics.RESPONSE, self._on_response, RELIABLE_QOS)
        self.node.create_subscription(
            SpeechEvent, topics.SPEECH_EVENTS, self._on_speech, RELIABLE_QOS
        )
        self.node.create_subscription(
            Transcript, topics.TRANSCRIPT, self._on_transcript, RELIABLE_QOS
        )
        self.respond = RespondClient(self.node)
        self.executor = MultiThreadedExecutor(num_threads=2)
        self.executor.add_node(self.node)
        self.spin = SpinThread(self.executor, "demo_observer_spin")

    def _add_timings(self, prefix: str, timings) -> None:
        for timing in timings:
            self.stage_ms.setdefault(f"{prefix}/{timing.stage}", []).append(timing.duration_ms)

    def _on_profile(self, msg) -> None:
        from uservlm_ros.ros.conversions import stamp_to_seconds

        stamp = stamp_to_seconds(msg.header.stamp)
        sighting = Sighting(
            stamp, msg.track_id, msg.person_id, msg.visits, tuple(float(v) for v in msg.roi)
        )
        with self.lock:
            self.profiles[msg.track_id] = msg
            self.sightings.append(sighting)
            # Latency of a frame's first profile only: latched history, the republished profile
            # of a person who stopped being engaged and other people's profiles of the same
            # frame carry older stamps and are not new work.
            if stamp > self._newest_profiled and self.measuring_profiles:
                self._newest_profiled = stamp
                self.profile_latency_ms.append((time.time() - stamp) * 1e3)
                self._add_timings("profile", msg.timings)

    def _on_faces(self, msg) -> None:
        with self.lock:
            self._add_timings("faces", msg.timings)
            image = self.images.get((msg.header.stamp.sec, msg.header.stamp.nanosec))
            if msg.faces and image is not None:
                self.frames_with[len(msg.faces)] = (image, msg)

    def _on_image(self, msg) -> None:
        with self.lock:
            self.images[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = msg
            while len(self.images) > 30:  # the faces of a frame come within a few frames
                del self.images[next(iter(self.images))]

    def _on_response(self, msg) -> None:
        with self.lock:
            if msg.final:
                self.responses[msg.request_id] = msg
                self._add_timings("response", msg.timings)
            else:
                self.early.setdefault(msg.request_id, time.time())

    def _on_speech(self, msg) -> None:
        with self.lock:
            self.speech.append((time.time(), msg))

    def _on_transcript(self, msg) -> None:
        with self.lock:
            self.transcripts.append(msg)

    def known_users(self) -> list[int]:
        """Tracks whose profile has a known gender or age, in order of first profile."""
        with self.lock:
            return [t for t, p in self.profiles.items() if p.gender.known or p.age_group.known]

    def close(self) -> None:
        self.spin.stop()
        self.executor.shutdown(timeout_sec=2)
        self.respond.destroy()
        self.node.destroy_node()


def _wait(predicate, timeout_s: float, step_s: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step_s)
    return predicate()


def free_port(preferred: int) -> int:
    """`preferred` when nothing listens on it on loopback, else a port the system picks."""
    import socket

    for port in (preferred, 0):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return probe.getsockname()[1]
    raise UservlmError("no free TCP port on 127.0.0.1 for the console")


def run_demo(
    out_root: Path = Path("demo_output"),
    vlm_model: str = "",
    out: TextIO | None = None,
    profile_timeout_s: float = 60.0,
    console: bool = False,
    server_url: str | None = None,
    served_model: str = "",
    server_key_file: str = "",
) -> int:
    """Run the demo; returns 0 when every question got its answer (or explicit error).

    The responder answers with the fallback templates, the User-VLM in `vlm_model`, or the
    model `served_model` (the only one served when "") on the OpenAI-compatible server at
    `server_url` (vLLM: http://HOST:8000/v1), with the API key in `server_key_file` if any.

    The operator console (console_node) runs with the graph; `console` keeps the graph running
    after the scripted questions, until SIGINT (Ctrl-C) or SIGTERM, so a person can watch and
    ask in the page. A signal to this process stops the graph at any point; before the end of
    the scripted questions it returns 130 and writes no report."""
    from uservlm_ros.bringup.stopping import Stopped, stop_on_signals

    try:
        with stop_on_signals():  # also while the server is asked what it serves
            responder, answers_from = _responder_choice(
                vlm_model, server_url, served_model, server_key_file
            )
            return _run_demo(out_root, responder, answers_from, out, profile_timeout_s, console)
    except Stopped as stop:
        print(f"uservlm demo: stopped by {stop.signal_name}", file=sys.stderr)
        return 130


def _responder_choice(
    vlm_model: str, server_url: str | None, served_model: str, server_key_file: str
) -> tuple[dict[str, str], str]:
    """The responder node's parameters and the line saying where answers come from, checked
    before anything starts: a bad path or a server that does not answer fails at once."""
    from uservlm_ros.bringup.preflight import check_server, check_vlm_model

    if server_url is not None and not server_url.strip():
        raise ConfigError("--server needs the server's URL, e.g. http://HOST:8000/v1")
    if vlm_model and server_url:
        raise ConfigError("give a VLM folder or a server, not both")
    if (served_model or server_key_file) and not server_url:
        raise ConfigError("--served-model and --api-key-file are options of --server URL")
    if vlm_model:
        check_vlm_model(vlm_model)
        parameters = {"responder.backend": "paligemma", "model.path": vlm_model}
        return parameters, "the User-VLM at " + vlm_model
    if server_url:
        if server_key_file:  # the responder node may run elsewhere than this directory
            server_key_file = str(Path(server_key_file).expanduser().resolve())
        served_model = check_server(server_url, served_model, server_key_file)
        parameters = {
            "responder.backend": "openai",
            "server.url": server_url,
            "server.model": served_model,
            "server.api_key_file": server_key_file,
        }
        return parameters, f"the model {served_model} served at {server_url}"
    return {}, (
        "the FALLBACK TEMPLATE responder (no VLM weights here: answers are templates, not VLM "
        "output)"
    )


def _run_demo(
    out_root: Path,
    responder: dict[str, str],
    answers_from: str,
    out: TextIO | None,
    profile_timeout_s: float,
    console: bool,
) -> int:
    import rclpy
    from rclpy.signals import SignalHandlerOptions

    from uservlm_ros.bringup.graph import load_graph
    from uservlm_ros.bringup.runner import GraphRunner
    from uservlm_ros.bringup.stopping import Stopped
    from uservlm_ros.demo.scene import make_scene
    from uservlm_ros.ros.graph_probe import refuse_a_second_graph
    from uservlm_ros.sim.pepper import SimulatedPepper

    out = out or sys.stdout
    started = time.monotonic()
    folder = Path(out_root) / datetime.now().strftime("%Y%m%d-%H%M%S")
    folder.mkdir(parents=True, exist_ok=True)

    def say(text: str) -> None:
        out.write(f"[{time.monotonic() - started:5.1f} s] {text}\n")
        out.flush()

    say(f"uservlm demo: no robot, no internet; answers come from {answers_from}")
    import qi

    qi.logging.setLevel(qi.logging.WARNING)  # the simulated robot's service chatter
    scene = make_scene(45)
    # The second person walks in, then out; the sequence loops. Between two passes they are out
    # of view for 4.5 s, longer than face_crop_node's tracker.reid_timeout_s (3 s), so each
    # return is a new face track and a new visit of the same person (issue 19).
    frames = [f.rgb for f in scene] + [f.rgb for f in reversed(scene)] + [scene[0].rgb] * 15
    pepper = SimulatedPepper(port=0, frames=frames, speech_s_per_word=SPEECH_S_PER_WORD)
    url = pepper.start()
    say(
        f"simulated Pepper listening at {url} (camera: {len(frames)} frames, two people; "
        "microphones: recorded questions)"
    )

    console_port = free_port(CONSOLE_PORT)
    overrides = {
        "camera_node": {"naoqi.port": pepper.port},
        "naoqi_bridge_node": {"robot.port": pepper.port},
        "speech_node": {"naoqi.port": pepper.port},
        "console_node": {"port": console_port},
    }
    if responder:
        overrides["vlm_responder_node"] = responder
    graph = load_graph("demo", overrides)
    node_log = (folder / "nodes.log").open("w")
    runner = GraphRunner(graph, out=node_log, colour=False)
    own_context = not rclpy.ok()
    if own_context:  # signals stay run_demo's (rclpy's handlers would only stop this context)
        rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    observer = None
    noise_ok = False
    exchanges: list[Exchange] = []
    try:
        observer = _Observer()  # also the probe for another graph on this domain
        refuse_a_second_graph(observer.node, [s.name for s in graph.nodes], "", "make demo")
        runner.start()
        say(
            f"started {len(graph.nodes)} nodes ({', '.join(s.name for s in graph.nodes)}) in "
            f"{len(graph.processes)} processes; "
            f"their output: {folder / 'nodes.log'}"
        )
        say(
            f"operator console: http://127.0.0.1:{console_port}/ (open it while the demo runs"
            + ("; Ctrl-C ends the demo)" if console else "; `uservlm demo --console` keeps it up)")
        )
        if not observer.respond.wait_for_server(90):
            raise UservlmError("the responder did not come up; see nodes.log")

        def failed_node() -> str | None:
            return next(
                (c.process.name for c in runner.children if c.popen.poll() is not None), None
            )

        def settled() -> bool:  # two users, each profile fused over several crops
            users = observer.known_users()
            return len(users) >= 2 and all(
                observer.profiles[t].observations >= MIN_OBSERVATIONS for t in users[:2]
            )

        def engaged() -> bool:  # someone to answer: questions go to the engaged person
            with observer.lock:
                return any(p.engaged for p in observer.profiles.values())

        if not _wait(lambda: (settled() and engaged()) or failed_node(), profile_timeout_s):
            if not settled():
                say("warning: fewer than two users were profiled in time")
            else:
                say("warning: nobody became engaged in time: answers go to nobody in particular")
        if failed_node():
            raise UservlmError(f"{failed_node()} exited; see {folder / 'nodes.log'}")
        users = observer.known_users()
        if not users:
            raise UservlmError("nobody was profiled; see nodes.log")
        for index, track in enumerate(users[:2]):
            profile = observer.profiles[track]
            say(
                f"{answer_for(profile.person_id, track)} ({'first' if index == 0 else 'second'} "
                f"person): {profile.profile_text or '(no known attribute yet)'}"
            )
            say(f"    {describe(profile)}")

        if not _wait(lambda: "uservlm_speech" in _audio_subscribers(pepper), 60):
            raise UservlmError("speech_node did not subscribe to the microphones; see nodes.log")
        observer.measuring_profiles = True
        for item in QUESTIONS:
            exchanges.append(_speak(observer, pepper, item, say))
        noise_ok = _play_noise(observer, pepper, say)
        with observer.lock:
            own = sum(t.dropped == "robot_speaking" for t in observer.transcripts)
        say(
            f"Pepper heard its own voice {own} time(s) while answering "
            f"({pepper.microphones.own_speech_s:.0f} s of speech): no question from it"
        )
        if console:
            say(
                f"the graph keeps running: ask in the console at http://127.0.0.1:{console_port}/"
                " (Ctrl-C stops the demo and writes the report)"
            )
            try:
                _wait(failed_node, float("inf"), step_s=0.5)
            except Stopped as stop:
                say(f"{stop.signal_name}: stopping the graph")
            else:
                say(f"{failed_node()} exited; see {folder / 'nodes.log'}")
    finally:
        runner.stop()
        graph.remove_temporary_files()
        node_log.close()
        if observer is not None:
            observer.close()
        if own_context:
            rclpy.try_shutdown()
        pepper.stop()

    _print_pepper_calls(pepper, say)
    height, width = scene[0].rgb.shape[:2]
    problems = identity_errors(observer.sightings, scene_faces(scene, width, height))
    who = persons_section(persons_seen(observer.sightings, observer.profiles), problems)
    report = write_demo_report(folder, observer, exchanges, pepper, who)
    answered = sum(e.response is not None for e in exchanges)
    say(f"{answered}/{len(exchanges)} questions answered (errors included); report: {report}")
    if problems:
        say(f"identity check FAILED: {'; '.join(problems)}")
    say(f"done in {time.monotonic() - started:.0f} s")
    return 0 if answered == len(exchanges) and noise_ok and not problems else 1


def _audio_subscribers(pepper) -> list[str]:
    device = pepper.services.get("ALAudioDevice")
    return device.subscribers if device is not None else []


def _speak(observer: _Observer, pepper, item: SpokenQuestion, say) -> Exchange:
    """Say a recorded question into the microphones; follow it to Pepper's answer."""
    from uservlm_ros.ros.conversions import stamp_to_seconds
    from uservlm_ros.sim.audio_device import SPEECH_DIR

    played = pepper.microphones.play_file(SPEECH_DIR / item.clip)
    played.done.wait(30)
    exchange = Exchange(item.text, played.speech_end or time.time())
    say(f"user says into Pepper's microphones: {item.text!r}")

    def transcribed() -> bool:
        with observer.lock:
            for msg in observer.transcripts:
                if not msg.dropped and stamp_to_seconds(msg.audio_end) >= played.start:
                    exchange.transcript = msg
                    return True
        return False

    if not _wait(transcribed, 30):
        t0 = played.start  # times below: seconds from the start of the question's clip
        with observer.lock:
            finished = [t for t, e in observer.speech if e.event == "finished"]
            dropped = [
                f"{msg.text!r} ({msg.dropped}, audio {stamp_to_seconds(msg.audio_start) - t0:+.2f}"
                f" to {stamp_to_seconds(msg.audio_end) - t0:+.2f} s)"
                for msg in observer.transcripts
                if msg.dropped and stamp_to_seconds(msg.audio_end) >= played.start
            ]
        last_word = f"; the robot's last word at {max(finished) - t0:+.2f} s" if finished else ""
        why = (
            f"; speech_node dropped {', '.join(dropped)} (times from the question's start"
            f"{last_word})"
            if dropped
            else ""
        )
        say(f"    no question was heard{why} (see nodes.log)")
        return exchange
    msg = exchange.transcript
    exchange.heard, exchange.request_id = msg.text, msg.request_id
    exchange.transcript_at = stamp_to_seconds(msg.header.stamp)
    say(
        f"    heard {msg.text!r} (confidence {msg.confidence:.2f}, recognition "
        f"{msg.asr_ms:.0f} ms, end of speech -> question "
        f"{(exchange.transcript_at - exchange.speech_end) * 1e3:.0f} ms)"
    )

    def answered() -> bool:
        with observer.lock:
            exchange.response = observer.responses.get(msg.request_id)
            timed = [(t, e) for t, e in observer.speech if e.request_id == msg.request_id]
        exchange.speech_finished = any(
            e.event == "finished" and e.part in ("rest", "full") for _, e in timed
        )
        starts = [t for t, e in timed if e.event == "started"]
        if starts and exchange.speech_started_at is None:
            exchange.speech_started_at = min(starts)
        return exchange.response is not None and (
            exchange.speech_finished or bool(exchange.response.error)
        )

    _wait(answered, 60)
    response = exchange.response
    if response is None:
        say("    no answer within 60 s")
        return exchange
    with observer.lock:
        exchange.first_sentence_at = observer.early.get(response.request_id)
    exchange.track_id, exchange.person_id = response.track_id, response.person_id
    exchange.addressee = response.addressee
    if response.error:
        say(f"    robot: explicit error: {response.error}")
        return exchange
    say(
        f"    robot to {answer_for(response.person_id, response.track_id, response.addressee)} "
        f"({response.responder}, "
        f"gesture {response.gesture or 'none'}): {response.text!r}"
    )
    # The user waits for the robot's voice tail to fade: speech_node takes what it hears within
    # `robot.speech_tail_s` (0.5 s) of the robot's last word, pre-roll (0.2 s) included, for the
    # robot's own voice; 0.8 s left too little margin and lost a question now and then.
    time.sleep(1.2)
    return exchange


def _play_noise(observer: _Observer, pepper, say) -> bool:
    """Noise into the microphones; True when it became no question."""
    import numpy as np

    with observer.lock:
        before = len(observer.transcripts)
    noise = np.random.default_rng(0).normal(0.0, 0.05, int(NOISE_S * 16000)).astype(np.float32)
    played = pepper.microphones.play(noise, "noise")
    played.done.wait(30)
    time.sleep(1.5)  # hangover and recognition, had it been speech
    with observer.lock:
        asked = [t.text for t in observer.transcripts[before:] if not t.dropped]
    say(
        f"{NOISE_S:g} s of noise in the microphones: "
        + (f"UNEXPECTED questions {asked}" if asked else "no question (as it should be)")
    )
    return not asked


def _print_pepper_calls(pepper, say) -> None:
    say("what Pepper did (calls recorded by the simulated robot):")
    for call in pepper.calls:
        if call.service in (
            "ALAnimatedSpeech",
            "ALTextToSpeech",
            "ALAnimationPlayer",
            "ALRobotPosture",
            "ALMotion",
        ):
            args = ", ".join(repr(a) for a in call.args)
            say(f"    {call.service}.{call.method}({args})")


def write_demo_report(
    folder: Path,
    observer: _Observer | None,
    exchanges: list[Exchange],
    pepper,
    who_was_seen: Sequence[str] = (),
) -> Path:
    """report.md with `who_was_seen` (persons_seen.persons_section), annotated frames, the
    transcript and a latency chart; returns its path."""
    import cv2

    from uservlm_ros.core.overlay import draw_people
    from uservlm_ros.eval.report import latency_chart, latency_table
    from uservlm_ros.ros.conversions import faces_to_people, image_to_rgb

    lines = [
        "# uservlm demo report",
        "",
        "The whole system ran on this machine: simulated Pepper (camera, microphones, speech, "
        "gestures) over NAOqi's qi protocol, the node graph over DDS, the real BlazeFace "
        "detector and attribute profiler, Silero VAD and Whisper tiny.en on the questions "
        "spoken into Pepper's microphones. Answers from `fallback-template` are template text, "
        "not VLM output.",
        "",
    ]
    lines += who_was_seen
    if observer is not None:
        for count, (image, faces) in sorted(observer.frames_with.items()):
            # Drawn with the final profiles (the live debug image shows the ones of its time).
            drawn = draw_people(image_to_rgb(image), faces_to_people(faces, observer.profiles))
            path = folder / f"frame_{count}_faces.png"
            cv2.imwrite(str(path), cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
            lines.append(f"![frame with {count} face(s)]({path.name})")
        lines.append("")
    lines += [
        "## Conversation",
        "",
        "Times are from the end of the user's speech in Pepper's microphones.",
        "",
        "| said | heard | ASR | answer (to whom) | responder | gesture | "
        "-> question | -> first sentence | -> robot speaks |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def since_speech(e: Exchange, at: float | None) -> str:
        return f"{(at - e.speech_end) * 1e3:.0f} ms" if at else "-"

    for e in exchanges:
        r = e.response
        answer = "(no answer)" if r is None else (f"error: {r.error}" if r.error else r.text)
        asr = f"{e.transcript.asr_ms:.0f} ms" if e.transcript is not None else "-"
        lines.append(
            f"| {e.said} | {e.heard or '(nothing)'} | {asr} | {answer} "
            f"({answer_for(e.person_id, e.track_id, e.addressee)}) "
            f"| {r.responder if r else '-'} | {r.gesture if r else '-'} "
            f"| {since_speech(e, e.transcript_at)} | {since_speech(e, e.first_sentence_at)} "
            f"| {since_speech(e, e.speech_started_at)} |"
        )
    lines += ["", "## What Pepper did", ""]
    lines += [
        f"- `{c.service}.{c.method}({', '.join(repr(a) for a in c.args)})`" for c in pepper.calls
    ]
    if observer is not None:
        stages = {name: percentiles(values) for name, values in sorted(observer.stage_ms.items())}
        stages["camera -> profile (end to end)"] = percentiles(observer.profile_latency_ms)

        def after_speech(attribute: str) -> list[float]:
            return [
                (getattr(e, attribute) - e.speech_end) * 1e3
                for e in exchanges
                if getattr(e, attribute)
            ]

        asr = [e.transcript.asr_ms for e in exchanges if e.transcript is not None]
        stages["speech recognition (ASR compute)"] = percentiles(asr)
        stages["end of speech -> question"] = percentiles(after_speech("transcript_at"))
        stages["end of speech -> first sentence"] = percentiles(after_speech("first_sentence_at"))
        stages["end of speech -> robot speech start"] = percentiles(
            after_speech("speech_started_at")
        )
        chart = latency_chart(stages, folder / "latency.png", "per-stage latency (demo run)")
        lines += ["", "## Latency", "", *latency_table(stages), "", f"![latency]({chart.name})"]
    path = folder / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
