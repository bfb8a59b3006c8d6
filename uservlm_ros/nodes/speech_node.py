"""speech_node: the robot hears questions. Audio -> Silero VAD -> Whisper -> the Respond action.

    python -m uservlm_ros.nodes.speech_node --ros-args -p source:=naoqi -p naoqi.ip:=10.0.0.2

Audio comes from Pepper's microphones (ALAudioDevice over libqi), a local microphone or WAV
files (`source`) and is published on uservlm/audio (uservlm/AudioChunk) while someone listens.
Voice activity detection cuts utterances; each is recognised and published on
uservlm/transcript (uservlm/Transcript); unless it is empty, noise, or heard while the robot
spoke (uservlm/speech_events from the bridge, plus `robot.speech_tail_s`), it is asked as a
question through the Respond action for the person being addressed (track 0), so the
transcript and the answer share one request id. Threads: the source's own, one for VAD, one for
recognition; none blocks the executor.
"""

from __future__ import annotations

import time

from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.lifecycle import TransitionCallbackReturn
from std_msgs.msg import Header
from uservlm.msg import AudioChunk, Response, SpeechEvent, Transcript

from uservlm_ros.backends.asr import RECOGNISERS, AsrResult
from uservlm_ros.backends.audio import AudioBlock
from uservlm_ros.backends.audio_sources import SOURCES
from uservlm_ros.backends.hearing import DROP_MEMORY_S, AsrJob, Hearing, HearingOptions
from uservlm_ros.backends.listener import HeardUtterance, Listener
from uservlm_ros.backends.vad import DETECTORS
from uservlm_ros.core import health
from uservlm_ros.core.cpu import set_niceness
from uservlm_ros.core.errors import UservlmError
from uservlm_ros.core.health import health_params
from uservlm_ros.core.parameters import Param, config_of, params_of
from uservlm_ros.core.prompt import MODES
from uservlm_ros.core.utterances import (
    ROBOT_EVENTS,
    RobotSpeechGate,
    TranscriptFilter,
    VadConfig,
)
from uservlm_ros.core.worker import Worker
from uservlm_ros.ros import topics
from uservlm_ros.ros.conversions import seconds_to_stamp
from uservlm_ros.ros.diagnostics import log_rejection, log_running
from uservlm_ros.ros.lifecycle import ModelNode
from uservlm_ros.ros.node_main import node_main
from uservlm_ros.ros.param_declare import AUTOSTART
from uservlm_ros.ros.qos import RELIABLE_QOS
from uservlm_ros.ros.rep155 import REP155_ENABLED, VoicePublisher, rep155_output
from uservlm_ros.ros.respond_client import RespondClient

PARAMS: list[Param] = [
    AUTOSTART,
    SOURCES.choice_param("source", "naoqi", "Where the audio comes from"),
    *SOURCES.params(),
    Param(
        "audio.publish",
        True,
        "Publish the captured audio on uservlm/audio (only while it has subscribers)",
    ),
    *params_of(HearingOptions, ""),
    DETECTORS.choice_param("vad.backend", "silero", "Voice activity detector"),
    *DETECTORS.params(),
    *params_of(VadConfig, ""),
    RECOGNISERS.choice_param("asr.backend", "faster_whisper", "Speech recogniser"),
    *RECOGNISERS.params(),
    Param(
        "cpu.nice",
        10,
        "Scheduling niceness of this node's process (0 = normal, 19 = lowest): recognition bursts "
        "yield the cores to perception when both want them and still use every thread when the "
        "CPU is idle",
        min=0,
        max=19,
    ),
    *params_of(TranscriptFilter, ""),
    *params_of(RobotSpeechGate, ""),
    Param("respond.enabled", True, "Ask each transcript as a question (false: transcripts only)"),
    Param(
        "respond.track_id",
        0,
        "User the questions are asked for (0 = whoever the robot is addressing)",
        min=0,
        max=2**31 - 1,
    ),
    Param(
        "respond.mode",
        "",
        'Respond goal mode ("" = the responder\'s default)',
        choices=("", *MODES),
        live=True,
    ),
    REP155_ENABLED,
    # Recognition takes ~0.5 s per utterance with tiny.en on 2 CPU cores.
    *health_params(max_processing_ms=3000.0, hang_s=30.0),
]


class SpeechNode(ModelNode):
    def __init__(self, **kwargs) -> None:
        super().__init__("speech_node", PARAMS, **kwargs)
        self.vad = self.asr = self.source = None
        self.hearing: Hearing | None = None
        self._source_problem = ""  # what the source last reported wrong; "" when it works
        self._rejections: dict[str, float] = {}
        # Made at the first activation that asks, then kept (RespondClient.abandon_pending).
        self._respond: RespondClient | None = None
        self._asking = False
        self._audio_pub = self._transcript_pub = None
        self._voice: VoicePublisher | None = None  # REP-155 humans/voices/, while active
        self._vad_worker: Worker[AudioBlock] = Worker(
            lambda timeout: self.hearing.take_block(timeout),
            lambda block: self.hearing.handle_block(block),
            "speech_vad",
            self.worker_error_logger(lambda block: f"an audio block of {block.duration_s:.2f} s"),
            wake=self._wake_workers,
        )
        self._asr_worker: Worker[AsrJob] = Worker(
            lambda timeout: self.hearing.take_job(timeout),
            lambda job: self.hearing.handle_job(job),
            "speech_asr",
            self.worker_error_logger(
                lambda job: f"an utterance of {job.item.utterance.duration_s:.1f} s"
            ),
            wake=self._wake_workers,
        )
        self.workers = [self._vad_worker, self._asr_worker]

    # ------------------------------------------------------------------ lifecycle

    def _configure(self) -> TransitionCallbackReturn:
        p = self.params
        log = self.get_logger()
        try:  # raising niceness needs no privilege; lowering it back does
            set_niceness(p["cpu.nice"])
        except PermissionError:
            log.warning(f"cannot set cpu.nice to {p['cpu.nice']} (lowering niceness needs root)")
        try:
            config = config_of(VadConfig, "", p, early_ms=p["asr.early_start_ms"])
        except ValueError as error:
            log.error(f"bad vad parameters: {error}")
            return TransitionCallbackReturn.FAILURE
        try:
            self.source = SOURCES.create(p["source"], p)
            self.vad = DETECTORS.create(p["vad.backend"], p)
            started = time.perf_counter()
            self.asr = RECOGNISERS.create(p["asr.backend"], p)
            self.asr.transcribe(self._warm_up_audio())  # the first call is slower
        except UservlmError as error:
            log.error(f"cannot configure the speech node: {error}")
            return TransitionCallbackReturn.FAILURE
        log.info(
            f"{self.asr.model_id} and {self.vad.model_id} loaded in "
            f"{time.perf_counter() - started:.1f} s"
        )
        self.hearing = Hearing(
            Listener(self.vad, config),
            self.asr,
            config_of(HearingOptions, "", p),
            config_of(RobotSpeechGate, "", p),
            lambda: config_of(TranscriptFilter, "", self.params),  # live: read each time
            self,
        )
        self.start_diagnostics(self.asr.model_id)
        return TransitionCallbackReturn.SUCCESS

    @staticmethod
    def _warm_up_audio():
        import numpy as np

        return np.zeros(16000, np.float32)

    def on_activate(self, state) -> TransitionCallbackReturn:
        self._audio_pub = self.create_publisher(AudioChunk, topics.AUDIO, RELIABLE_QOS)
        self._transcript_pub = self.create_publisher(Transcript, topics.TRANSCRIPT, RELIABLE_QOS)
        self._io = [
            self._audio_pub,
            self._transcript_pub,
            self.create_subscription(
                SpeechEvent, topics.SPEECH_EVENTS, self._on_speech_event, RELIABLE_QOS
            ),
        ]
        self._voice = rep155_output(self, VoicePublisher, "REP-155 voice topics")
        if self._voice is not None:
            self._io.append(self._voice)
        self._asking = self.params["respond.enabled"]
        if self._asking and self._respond is None:
            self._respond = RespondClient(self)
        self.hearing.start(lossless=self.source.lossless)
        for worker in self.workers:
            worker.start()
        self.diagnostics.set_status(DiagnosticStatus.OK, f"waiting for {self.source.name} audio")
        self.source.start(self.hearing.on_block, self._on_source_status)
        flow = "{source} audio -> {}" + (" -> Respond action" if self._asking else "")
        log_running(self, "active", flow, topics.TRANSCRIPT, source=self.source.name)
        return TransitionCallbackReturn.SUCCESS

    def _stop_work(self) -> None:
        if self.hearing is not None:
            self.hearing.stop()
        if self.source is not None:
            self.source.stop()
        super()._stop_work()
        if self.hearing is not None:
            self.hearing.clear()
        self._asking = False
        self._voice = None  # destroyed with the other activation entities
        if self._respond is not None:
            self._respond.abandon_pending("speech_node stopped before the answer came")

    def _release_model(self) -> None:
        self.vad = self.asr = self.source = self.hearing = None

    def destroy_node(self) -> None:
        # Kept across activations; the executor has stopped. Absent when the constructor failed.
        respond = getattr(self, "_respond", None)
        if respond is not None:
            respond.destroy()
            self._respond = None
        super().destroy_node()

    def _apply_live(self, changed: dict) -> None:
        if self.hearing is not None:
            self.hearing.set_tail(self.params["robot.speech_tail_s"])

    def _extra_health(self) -> list[health.Verdict]:
        if self.hearing is None:
            return []
        verdicts = [
            health.judge_queue("recognition", len(self.hearing.jobs), self.params["asr.queue_size"])
        ]
        if self._source_problem:  # no microphone, robot away: the node is up but deaf
            verdicts.append(health.Verdict(health.ERROR, (self._source_problem,)))
        dropped = self.hearing.recent_drops()
        if dropped:  # part of what was said was never listened to
            verdicts.append(
                health.Verdict(
                    health.ERROR,
                    (
                        f"dropped {dropped} audio block(s) in the last {DROP_MEMORY_S:.0f} s: "
                        "VAD and recognition do not keep up",
                    ),
                )
            )
        return verdicts

    def _wake_workers(self) -> None:
        if self.hearing is not None:
            self.hearing.notify()

    # ------------------------------------------------------------------ inputs

    def _on_source_status(self, ok: bool, message: str) -> None:
        if self.diagnostics is None:
            return
        if ok:
            self._source_problem = ""
            self.diagnostics.set_status(DiagnosticStatus.OK, message)
            self.get_logger().info(message)
        else:
            # e.g. no microphone on this computer, the robot away: the node stays up and retries
            self._source_problem = message
            self.diagnostics.count("source_problems")
            log_rejection(self, self._rejections, message, every_s=30.0)

    def _on_speech_event(self, msg: SpeechEvent) -> None:
        # Taken when it arrives, on the audio's clock (the bridge may run on another host).
        if msg.event in ROBOT_EVENTS and self.hearing is not None:
            self.hearing.robot_event(msg.event, time.time())

    # ------------------------------------------------------------------ Hearing's sink

    def count(self, name: str) -> None:
        self.diagnostics.count(name)

    def rejected(self, message: str) -> None:
        log_rejection(self, self._rejections, message)

    def audio(self, block: AudioBlock) -> None:
        if not self.params["audio.publish"] or self._audio_pub.get_subscription_count() == 0:
            return
        self._audio_pub.publish(
            AudioChunk(
                header=Header(stamp=seconds_to_stamp(block.start), frame_id=self.source.name),
                sample_rate=block.sample_rate,
                channels=block.channels,
                samples=block.samples,
            )
        )

    def transcript(self, item: HeardUtterance, result: AsrResult | None, dropped: str) -> None:
        request_id = "" if dropped else self._ask(result)
        u = item.utterance
        self._transcript_pub.publish(
            Transcript(
                header=Header(stamp=seconds_to_stamp(time.time()), frame_id=self.source.name),
                request_id=request_id,
                text=result.text if result else "",
                final=True,
                confidence=result.confidence if result else 0.0,
                language=result.language if result else "",
                audio_start=seconds_to_stamp(u.start),
                audio_end=seconds_to_stamp(u.speech_end),
                vad_ms=item.vad_ms,
                asr_ms=result.compute_ms if result else 0.0,
                dropped=dropped,
            )
        )
        if dropped:
            return
        voice = self._voice
        if voice is not None:
            voice.publish_final(
                Header(stamp=seconds_to_stamp(time.time()), frame_id=self.source.name),
                result.text,
                result.confidence,
                result.language,
            )
        self.get_logger().info(
            f"[{request_id or '-'}] heard {result.text!r} (confidence {result.confidence:.2f}, "
            f"asr {result.compute_ms:.0f} ms)"
        )

    def _ask(self, result: AsrResult) -> str:
        """The question's request id ("" when transcripts are not asked)."""
        if not (self._asking and self._respond is not None):
            return ""
        p = self.params
        call = self._respond.ask(
            result.text, track_id=p["respond.track_id"], mode=p["respond.mode"], source="voice"
        )
        call.add_done_callback(self._on_answer)
        return call.request_id

    def _on_answer(self, response: Response) -> None:
        if response.error:
            self.diagnostics.count("answers_failed")
            self.get_logger().warning(f"[{response.request_id}] no answer: {response.error}")
        else:
            self.diagnostics.count("answers")


# No NODE: speech_node does not join a container (nodes/container.py), since `cpu.nice` lowers
# the priority of its whole process.
main = node_main(SpeechNode)

if __name__ == "__main__":
    main()
