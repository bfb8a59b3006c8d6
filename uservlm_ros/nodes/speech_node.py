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

import json
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.lifecycle import TransitionCallbackReturn
from std_msgs.msg import Header, String
from uservlm.msg import AudioChunk, Response, Transcript

from uservlm_ros.backends.asr import ASR_BACKENDS, AsrOptions, AsrResult, make_asr_backend
from uservlm_ros.backends.audio import AudioBlock, AudioError
from uservlm_ros.backends.audio_sources import (
    NAOQI_CHANNELS,
    SOURCES,
    FileOptions,
    FileSource,
    MicrophoneOptions,
    MicrophoneSource,
    NaoqiAudioOptions,
    NaoqiAudioSource,
)
from uservlm_ros.backends.listener import HeardUtterance, Listener
from uservlm_ros.backends.pepper_speech import connection_params, robot_address
from uservlm_ros.backends.vad import SileroVad
from uservlm_ros.core import health
from uservlm_ros.core.cpu import set_niceness
from uservlm_ros.core.errors import UservlmError
from uservlm_ros.core.health import health_params
from uservlm_ros.core.parameters import Param
from uservlm_ros.core.prompt import MODES
from uservlm_ros.core.utterances import (
    DEFAULT_NOISE_PHRASES,
    ROBOT_EVENTS,
    RobotSpeechGate,
    TranscriptFilter,
    VadConfig,
    sounds_finished,
)
from uservlm_ros.core.worker import Worker
from uservlm_ros.ros import topics
from uservlm_ros.ros.conversions import seconds_to_stamp
from uservlm_ros.ros.diagnostics import log_rejection
from uservlm_ros.ros.lifecycle import ModelNode
from uservlm_ros.ros.node_main import run_node
from uservlm_ros.ros.parameters import AUTOSTART
from uservlm_ros.ros.qos import RELIABLE_QOS
from uservlm_ros.ros.rep155 import REP155_ENABLED, VoicePublisher, hri_msgs_available
from uservlm_ros.ros.respond_client import RespondClient

DROP_MEMORY_S = 60.0  # dropped audio keeps the diagnostics at ERROR this long


@dataclass
class _AsrJob:
    """One recognition to run. An early job works on a tentative copy of an utterance while its
    hangover runs; the final job of the same utterance reuses its result unless speech went on
    (then the early job is stale and skipped if it has not started). An early result that reads
    as a finished sentence is asked at once (committed) and the utterance ends there."""

    item: HeardUtterance
    early: bool = False
    reuse: _AsrJob | None = None
    stale: bool = False
    committed: bool = False
    result: AsrResult | None = None
    done: threading.Event = field(default_factory=threading.Event)


def _device_problem(value: str) -> str | None:
    if value in ("cpu", "cuda", "auto"):
        return None
    return f"expected cpu, cuda or auto, got {value!r}"


def _check_strings(value: list) -> str | None:
    return None if all(isinstance(v, str) for v in value) else "must be a list of strings"


PARAMS: list[Param] = [
    AUTOSTART,
    Param(
        "source",
        "naoqi",
        "Where the audio comes from: naoqi (Pepper's microphones through ALAudioDevice), "
        "microphone (a local input device through PortAudio) or file (file.path)",
        choices=SOURCES,
    ),
    *connection_params("naoqi"),
    Param(
        "naoqi.channel",
        "front",
        "Which of Pepper's microphones (16 kHz needs a single one)",
        choices=tuple(c for c in NAOQI_CHANNELS if c != "all"),
    ),
    Param(
        "naoqi.client_name",
        "uservlm_speech",
        "Name of the qi service NAOqi sends the audio to (unique per robot)",
    ),
    Param(
        "naoqi.audio_timeout_s",
        3.0,
        "Subscribe again when no audio came for this long (NAOqi's audio can stall), s",
        min=0.5,
        max=600.0,
    ),
    Param(
        "microphone.device",
        "",
        "Input device: empty = the system default, a device index, or part of its name",
    ),
    Param(
        "microphone.sample_rate",
        16000,
        "Capture rate, Hz (0 = the device's default; other rates are resampled to 16 kHz)",
        min=0,
        max=384000,
    ),
    Param("microphone.block_ms", 100, "Capture block length, ms", min=10, max=1000),
    Param(
        "microphone.retry_s",
        5.0,
        "Where no microphone can be opened, try again after this long, s",
        min=0.5,
        max=3600.0,
    ),
    Param("file.path", "", "source file: a WAV file or a folder of them (played in name order)"),
    Param(
        "file.realtime",
        True,
        "Play files at real speed; false = as fast as the node takes them (the file waits for "
        "VAD and recognition: no audio is dropped)",
    ),
    Param("file.loop", False, "Start again after the last file"),
    Param("file.gap_s", 1.0, "Silence before, between and after the files, s", min=0.0, max=60.0),
    Param(
        "audio.publish",
        True,
        "Publish the captured audio on uservlm/audio (only while it has subscribers)",
    ),
    Param(
        "audio.queue_s",
        10.0,
        "Most captured audio waiting for VAD, s; older blocks are dropped, counted and "
        "reported as an ERROR for a minute (files not played in real time wait instead)",
        min=0.5,
        max=600.0,
    ),
    Param("vad.model_path", "", 'Silero VAD ONNX file ("" = the one in the silero-vad package)'),
    Param(
        "vad.start_threshold",
        0.5,
        "Speech probability at which an utterance starts",
        min=0.0,
        max=1.0,
    ),
    Param(
        "vad.end_threshold",
        0.35,
        "Below this probability a frame counts as silence (hysteresis; <= vad.start_threshold)",
        min=0.0,
        max=1.0,
    ),
    Param(
        "vad.pre_roll_ms",
        200.0,
        "Audio kept from before the detected start (the first syllable's onset), ms",
        min=0.0,
        max=2000.0,
    ),
    Param(
        "vad.hangover_ms",
        700.0,
        "Silence that ends an utterance, ms: pauses inside a question shorter than this stay "
        "inside it (a finished sentence may end sooner: turn.early_end)",
        min=32.0,
        max=5000.0,
    ),
    Param(
        "vad.min_speech_ms",
        250.0,
        "Shorter utterances are dropped as too short (knocks, clicks), ms",
        min=0.0,
        max=5000.0,
    ),
    Param(
        "vad.max_utterance_s",
        15.0,
        "Longer speech is cut here and continues as a new utterance, s",
        min=1.0,
        max=30.0,
    ),
    Param("vad.threads", 1, "CPU threads of the VAD model", min=1, max=16),
    Param(
        "asr.early_start_ms",
        128.0,
        "Start recognising after this much silence, while the hangover still runs; the result "
        "is used when no speech follows (saves up to the hangover in latency, costs a wasted "
        "recognition when the speaker goes on). 0 = wait for the hangover; must be < "
        "vad.hangover_ms",
        min=0.0,
        max=5000.0,
    ),
    Param(
        "turn.early_end",
        False,
        "End the utterance when the early recognition (asr.early_start_ms) reads as a finished "
        "sentence (3 words or more, an end mark, not after a word such as 'the' or 'and'), "
        "without waiting for the rest of the hangover: answers ~0.3 s sooner, but cuts some "
        "questions paused in mid-sentence (tiny.en ends fragments with '?' too)",
    ),
    Param(
        "asr.audio_context_s",
        10.0,
        "Audio Whisper's encoder sees: the utterance padded with silence to this length, s "
        "(30 = Whisper's whole window: 3-4x slower on CPU; much less and Whisper repeats itself, "
        "then the utterance is recognised again with the whole window)",
        min=1.0,
        max=30.0,
    ),
    Param(
        "asr.backend",
        "faster_whisper",
        "Speech recogniser",
        choices=tuple(ASR_BACKENDS),
    ),
    Param(
        "model.path",
        "",
        "Whisper in CTranslate2 format: a folder, or a name in the local cache (base, small, "
        'large-v3-turbo, a repository id); "" = the embedded tiny.en (English only)',
    ),
    Param("model.device", "cpu", "cpu, cuda or auto", check=_device_problem),
    Param(
        "model.compute_type",
        "int8",
        "CTranslate2 weight type (int8 on CPU; float16 or int8_float16 on a GPU)",
        choices=(
            "int8",
            "int8_float16",
            "int8_float32",
            "float16",
            "bfloat16",
            "float32",
            "default",
        ),
    ),
    Param("model.threads", 2, "CPU threads of the recogniser", min=1, max=64),
    Param(
        "cpu.nice",
        10,
        "Scheduling niceness of this node's process (0 = normal, 19 = lowest): recognition bursts "
        "yield the cores to perception when both want them and still use every thread when the "
        "CPU is idle",
        min=0,
        max=19,
    ),
    Param(
        "asr.language",
        "en",
        'Language code spoken to the robot ("" = detect; needs a multilingual model)',
    ),
    Param("asr.beam_size", 1, "Beam width (1 = greedy: fastest)", min=1, max=10),
    Param(
        "asr.no_speech_threshold",
        0.6,
        "Whisper's silence test: above this no-speech probability (with a low log-prob) the "
        "utterance is silent",
        min=0.0,
        max=1.0,
    ),
    Param(
        "asr.queue_size",
        3,
        "Utterances waiting for recognition; more are dropped and counted",
        min=1,
        max=100,
    ),
    Param(
        "filter.noise_phrases",
        list(DEFAULT_NOISE_PHRASES),
        "Transcripts that alone are noise, not questions (compared in lower case without "
        "punctuation; Whisper writes them on silence and noise)",
        check=_check_strings,
        live=True,
    ),
    Param(
        "filter.min_confidence",
        0.3,
        "Transcripts less confident than this (exp of the mean token log-prob) are not asked",
        min=0.0,
        max=1.0,
        live=True,
    ),
    Param(
        "filter.max_chars_per_s",
        25.0,
        "Transcripts with more characters than this per second of audio (at least 2 s) are "
        "dropped as too_long: Whisper's hallucinations run longer than speech can",
        min=1.0,
        max=1000.0,
        live=True,
    ),
    Param(
        "robot.speech_tail_s",
        0.5,
        "After the robot stops speaking, what is heard for this long is still its own voice, s",
        min=0.0,
        max=30.0,
        live=True,
    ),
    Param(
        "robot.max_speech_s",
        60.0,
        "A 'started' speech event without its 'finished' stops counting after this long, s",
        min=1.0,
        max=3600.0,
    ),
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
        self.vad = None
        self.asr = None
        self.listener: Listener | None = None
        self.source = None
        self.gate = RobotSpeechGate(
            self.params["robot.speech_tail_s"], self.params["robot.max_speech_s"]
        )
        self._gate_lock = threading.Lock()
        self._source_problem = ""  # what the source last reported wrong; "" when it works
        self._blocks: deque[AudioBlock] = deque()
        self._queued_s = 0.0
        # A file not played in real time waits for room in the queues instead of losing audio.
        self._lossless = False
        self._feeding = False  # False tells a waiting source thread to give up (stopping)
        self._audio_drops: deque[float] = deque()  # monotonic times of dropped blocks
        self._jobs: deque[_AsrJob] = deque()
        self._early: _AsrJob | None = None  # the early job of the open utterance
        self._wake = threading.Condition()
        self._rejections: dict[str, float] = {}
        # Made at the first activation that asks, then kept (RespondClient.abandon_pending).
        self._respond: RespondClient | None = None
        self._asking = False
        self._audio_pub = self._transcript_pub = None
        self._voice: VoicePublisher | None = None  # REP-155 humans/voices/, while active
        self._vad_worker: Worker[AudioBlock] = Worker(
            self._take_block,
            self._handle_block,
            "speech_vad",
            self.worker_error_logger(lambda block: f"an audio block of {block.duration_s:.2f} s"),
            wake=self._wake_workers,
        )
        self._asr_worker: Worker[_AsrJob] = Worker(
            self._take_job,
            self._handle_job,
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
            config = VadConfig(
                start_threshold=p["vad.start_threshold"],
                end_threshold=p["vad.end_threshold"],
                pre_roll_ms=p["vad.pre_roll_ms"],
                hangover_ms=p["vad.hangover_ms"],
                min_speech_ms=p["vad.min_speech_ms"],
                max_utterance_s=p["vad.max_utterance_s"],
                early_ms=p["asr.early_start_ms"],
            )
        except ValueError as error:
            log.error(f"bad vad parameters: {error}")
            return TransitionCallbackReturn.FAILURE
        try:
            self.source = self._make_source()
            self.vad = SileroVad(p["vad.model_path"], p["vad.threads"])
            started = time.perf_counter()
            self.asr = make_asr_backend(
                p["asr.backend"],
                AsrOptions(
                    path=p["model.path"],
                    device=p["model.device"],
                    compute_type=p["model.compute_type"],
                    threads=p["model.threads"],
                    language=p["asr.language"],
                    beam_size=p["asr.beam_size"],
                    no_speech_threshold=p["asr.no_speech_threshold"],
                    audio_context_s=p["asr.audio_context_s"],
                ),
            )
            self.asr.transcribe(self._warm_up_audio())  # the first call is slower
        except UservlmError as error:
            log.error(f"cannot configure the speech node: {error}")
            return TransitionCallbackReturn.FAILURE
        log.info(
            f"{self.asr.model_id} and {self.vad.model_id} loaded in "
            f"{time.perf_counter() - started:.1f} s"
        )
        self.listener = Listener(self.vad, config)
        self.gate.tail_s = p["robot.speech_tail_s"]
        self.start_diagnostics(self.asr.model_id)
        return TransitionCallbackReturn.SUCCESS

    @staticmethod
    def _warm_up_audio():
        import numpy as np

        return np.zeros(16000, np.float32)

    def _make_source(self):
        p = self.params
        if p["source"] == "naoqi":
            return NaoqiAudioSource(
                NaoqiAudioOptions(
                    address=robot_address(p, "naoqi"),
                    channel=p["naoqi.channel"],
                    client_name=p["naoqi.client_name"],
                    connect_timeout_s=p["naoqi.connect_timeout_s"],
                    reconnect_min_s=p["naoqi.reconnect_min_s"],
                    reconnect_max_s=p["naoqi.reconnect_max_s"],
                    audio_timeout_s=p["naoqi.audio_timeout_s"],
                )
            )
        if p["source"] == "microphone":
            return MicrophoneSource(
                MicrophoneOptions(
                    device=p["microphone.device"],
                    sample_rate=p["microphone.sample_rate"],
                    block_ms=p["microphone.block_ms"],
                    retry_s=p["microphone.retry_s"],
                )
            )
        return FileSource(
            FileOptions(
                path=p["file.path"],
                realtime=p["file.realtime"],
                loop=p["file.loop"],
                gap_s=p["file.gap_s"],
            )
        )

    def on_activate(self, state) -> TransitionCallbackReturn:
        self._audio_pub = self.create_publisher(AudioChunk, topics.AUDIO, RELIABLE_QOS)
        self._transcript_pub = self.create_publisher(Transcript, topics.TRANSCRIPT, RELIABLE_QOS)
        self._io = [
            self._audio_pub,
            self._transcript_pub,
            self.create_subscription(
                String, topics.SPEECH_EVENTS, self._on_speech_event, RELIABLE_QOS
            ),
        ]
        if self.params["rep155.enabled"]:
            if hri_msgs_available():
                self._voice = VoicePublisher(self)
                self._io.append(self._voice)
            else:
                self.get_logger().warning("hri_msgs is not installed: no REP-155 voice topics")
        self._asking = self.params["respond.enabled"]
        if self._asking and self._respond is None:
            self._respond = RespondClient(self)
        self.listener.reset()
        self._lossless = isinstance(self.source, FileSource) and not self.params["file.realtime"]
        self._feeding = True
        for worker in self.workers:
            worker.start()
        self.diagnostics.set_status(DiagnosticStatus.OK, f"waiting for {self.source.name} audio")
        self.source.start(self._on_block, self._on_source_status)
        self.get_logger().info(
            f"speech_node active: {self.source.name} audio -> {topics.TRANSCRIPT}"
            + (" -> Respond action" if self._asking else "")
        )
        return TransitionCallbackReturn.SUCCESS

    def _stop_work(self) -> None:
        with self._wake:
            self._feeding = False
            self._wake.notify_all()
        if self.source is not None:
            self.source.stop()
        super()._stop_work()
        self._blocks.clear()
        self._jobs.clear()
        self._early = None
        self._queued_s = 0.0
        self._asking = False
        self._voice = None  # destroyed with the other activation entities
        if self._respond is not None:
            self._respond.abandon_pending("speech_node stopped before the answer came")

    def _release_model(self) -> None:
        self.vad = self.asr = self.listener = self.source = None

    def destroy_node(self) -> None:
        # Kept across activations; the executor has stopped. Absent when the constructor failed.
        respond = getattr(self, "_respond", None)
        if respond is not None:
            respond.destroy()
            self._respond = None
        super().destroy_node()

    def _apply_live(self, changed: dict) -> None:
        with self._gate_lock:
            self.gate.tail_s = self.params["robot.speech_tail_s"]

    def _extra_health(self) -> list[health.Verdict]:
        verdicts = [
            health.judge_queue("recognition", len(self._jobs), self.params["asr.queue_size"])
        ]
        if self._source_problem:  # no microphone, robot away: the node is up but deaf
            verdicts.append(health.Verdict(health.ERROR, (self._source_problem,)))
        with self._wake:
            while self._audio_drops and self._audio_drops[0] < time.monotonic() - DROP_MEMORY_S:
                self._audio_drops.popleft()
            dropped = len(self._audio_drops)
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
        with self._wake:
            self._wake.notify_all()

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

    def _on_block(self, block: AudioBlock) -> None:
        """From the source's thread: queue and return at once (a lossless file waits for room)."""
        limit = self.params["audio.queue_s"]
        with self._wake:
            while (
                self._lossless
                and self._feeding
                and self._blocks
                and self._queued_s + block.duration_s > limit
            ):
                self._wake.wait(0.1)
            self._blocks.append(block)
            self._queued_s += block.duration_s
            while self._queued_s > limit and len(self._blocks) > 1:
                old = self._blocks.popleft()
                self._queued_s -= old.duration_s
                self.diagnostics.count("audio_blocks_dropped")
                self._audio_drops.append(time.monotonic())
            self._wake.notify_all()

    def _on_speech_event(self, msg: String) -> None:
        try:
            kind = json.loads(msg.data).get("event", "")
        except (json.JSONDecodeError, AttributeError):
            log_rejection(
                self,
                self._rejections,
                f"ignored a speech event that is not JSON: {msg.data[:80]!r}",
            )
            return
        if kind in ROBOT_EVENTS:
            with self._gate_lock:
                self.gate.event(kind, time.time())

    # ------------------------------------------------------------------ VAD thread

    def _take_block(self, timeout: float) -> AudioBlock | None:
        with self._wake:
            if not self._blocks:
                self._wake.wait(timeout)
            if not self._blocks:
                return None
            block = self._blocks.popleft()
            self._queued_s -= block.duration_s
            self._wake.notify_all()  # a lossless source may wait for this room
            return block

    def _handle_block(self, block: AudioBlock) -> None:
        self.diagnostics.count("audio_blocks")
        self._publish_audio(block)
        self._settle_early()
        try:
            heard = self.listener.push_block(block)
        except AudioError as error:
            self.diagnostics.count("audio_blocks_rejected")
            log_rejection(self, self._rejections, f"rejected an audio block: {error}")
            return
        for item in heard:
            self._on_utterance(item)
        self._settle_early()

    def _settle_early(self) -> None:
        """The open utterance's early job: asked already (the utterance ends here) or overtaken
        by more speech (stale). Under the lock the ASR thread commits with."""
        with self._wake:
            early = self._early
            if early is None:
                return
            if early.committed:
                self.listener.discard_open()
                self.diagnostics.count("utterances")
                self._early = None
            elif self.listener.segmenter.open_key != early.item.key:
                early.stale = True  # the speaker went on: that copy is not the utterance
                self._early = None

    def _publish_audio(self, block: AudioBlock) -> None:
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

    def _on_utterance(self, item: HeardUtterance) -> None:
        u = item.utterance
        if u.dropped:  # too short: a click, not worth a transcript message
            if not u.tentative:
                self.diagnostics.count(f"dropped_{u.dropped}")
            return
        with self._gate_lock:
            robot_spoke = self.gate.speaking(u.start, u.end)
        if u.tentative:
            if not robot_spoke:
                self._early = _AsrJob(item, early=True)
                self._queue_job(self._early)
            return
        self.diagnostics.count("utterances")
        early, self._early = self._early, None
        if robot_spoke:
            self.diagnostics.count("dropped_robot_speaking")
            self._publish_transcript(item, None, dropped="robot_speaking")
            return
        job = _AsrJob(
            item, reuse=early if early is not None and early.item.key == item.key else None
        )
        if not self._queue_job(job):
            self.diagnostics.count("dropped_asr_busy")
            self._publish_transcript(item, None, dropped="asr_busy")

    def _queue_job(self, job: _AsrJob) -> bool:
        size = self.params["asr.queue_size"]
        with self._wake:
            # A lossless file waits for recognition (an early job is only worth it when free).
            while self._lossless and self._feeding and not job.early and len(self._jobs) >= size:
                self._wake.wait(0.1)
            if len(self._jobs) >= size:
                return False
            self._jobs.append(job)
            self._wake.notify_all()
            return True

    # ------------------------------------------------------------------ ASR thread

    def _take_job(self, timeout: float) -> _AsrJob | None:
        with self._wake:
            if not self._jobs:
                self._wake.wait(timeout)
            if not self._jobs:
                return None
            self._wake.notify_all()  # a lossless source may wait for this room
            return self._jobs.popleft()

    def _handle_job(self, job: _AsrJob) -> None:
        try:
            if job.early and job.stale:
                self.diagnostics.count("early_starts_skipped")
                return
            if job.reuse is not None and job.reuse.committed:
                return  # asked when its early result came
            result = job.reuse.result if job.reuse is not None else None
            if result is None:
                # A recogniser failure raises: the worker logs it with the utterance and counts it.
                result = self.asr.transcribe(job.item.utterance.samples)
            else:
                self.diagnostics.count("early_starts_used")
            job.result = result
        finally:
            job.done.set()
        if job.early:
            with self._wake:
                # Not for a file read faster than real time: there is no turn to take, and the
                # VAD may be far past the pause already.
                job.committed = (
                    self.params["turn.early_end"]
                    and not self._lossless
                    and not job.stale
                    and sounds_finished(result.text)
                    and not self._filters().reason(
                        result.text, result.confidence, job.item.utterance.duration_s
                    )
                )
            if job.committed:
                self.diagnostics.count("early_ends")
                self._after_asr(job.item, result)
            elif job.stale:
                self.diagnostics.count("early_starts_wasted")
            return
        self._after_asr(job.item, result)

    def _filters(self) -> TranscriptFilter:
        p = self.params  # live parameters: read each time
        return TranscriptFilter(
            noise_phrases=tuple(p["filter.noise_phrases"]),
            min_confidence=p["filter.min_confidence"],
            max_chars_per_s=p["filter.max_chars_per_s"],
        )

    def _after_asr(self, item: HeardUtterance, result) -> None:
        p = self.params
        dropped = self._filters().reason(result.text, result.confidence, item.utterance.duration_s)
        if not dropped:
            # Checked again: a speech event delayed in transit may have arrived meanwhile.
            with self._gate_lock:
                if self.gate.speaking(item.utterance.start, item.utterance.end):
                    dropped = "robot_speaking"
        if dropped:
            self.diagnostics.count(f"dropped_{dropped}")
            self._publish_transcript(item, result, dropped=dropped)
            return
        request_id = ""
        if self._asking and self._respond is not None:
            call = self._respond.ask(
                result.text,
                track_id=p["respond.track_id"],
                mode=p["respond.mode"],
                source="voice",
            )
            request_id = call.request_id
            call.add_done_callback(self._on_answer)
        self.diagnostics.count("questions")
        self._publish_transcript(item, result, request_id=request_id)
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

    def _on_answer(self, response: Response) -> None:
        if response.error:
            self.diagnostics.count("answers_failed")
            self.get_logger().warning(f"[{response.request_id}] no answer: {response.error}")
        else:
            self.diagnostics.count("answers")

    def _publish_transcript(
        self, item: HeardUtterance, result, request_id: str = "", dropped: str = ""
    ) -> None:
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


# No NODE: speech_node does not join a container (nodes/container.py), since `cpu.nice` lowers
# the priority of its whole process.


def main(args=None):
    sys.exit(run_node(SpeechNode, args))


if __name__ == "__main__":
    main()
