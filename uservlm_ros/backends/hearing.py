"""The speech node's turn logic without ROS: audio blocks in, transcripts and questions out.

`Hearing` keeps the audio waiting for the VAD and the utterances waiting for recognition (two
bounded queues, one condition), cuts utterances with a `Listener`, recognises them, and decides
what each one is: a question, or a transcript dropped with a reason (too short, heard while the
robot spoke, recognition busy, or a `TranscriptFilter` reason). Every utterance that is not too
short ends in exactly one `HearingSink.transcript` call.

Early recognition: after `asr.early_start_ms` of silence the listener hands out a tentative copy
of the open utterance and recognition starts while the hangover runs; the final job of the same
utterance reuses that result unless speech went on (the early job is then stale). With
`turn.early_end`, an early result that reads as a finished sentence is asked at once
(committed) and the utterance ends there.

Threads: the source's (`on_block`), the VAD worker (`take_block` / `handle_block`), the
recognition worker (`take_job` / `handle_job`), and whoever calls `robot_event`.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from uservlm_ros.backends.asr import AsrBackend, AsrResult
from uservlm_ros.backends.audio import AudioBlock, AudioError
from uservlm_ros.backends.listener import HeardUtterance, Listener
from uservlm_ros.core.parameters import setting
from uservlm_ros.core.utterances import RobotSpeechGate, TranscriptFilter, sounds_finished

DROP_MEMORY_S = 60.0  # dropped audio is reported this long


@dataclass(frozen=True)
class HearingOptions:
    queue_s: float = setting(10.0, name="audio.queue_s", min=0.5, max=600.0)
    """Most captured audio waiting for VAD, s; older blocks are dropped, counted and reported as
    an ERROR for a minute (files not played in real time wait instead)"""
    early_start_ms: float = setting(128.0, name="asr.early_start_ms", min=0.0, max=5000.0)
    """Start recognising after this much silence, while the hangover still runs; the result is
    used when no speech follows (saves up to the hangover in latency, costs a wasted
    recognition when the speaker goes on). 0 = wait for the hangover; must be <
    vad.hangover_ms"""
    early_end: bool = setting(False, name="turn.early_end")
    """End the utterance when the early recognition (asr.early_start_ms) reads as a finished
    sentence (3 words or more, an end mark, not after a word such as 'the' or 'and'), without
    waiting for the rest of the hangover: answers ~0.3 s sooner, but cuts some questions
    paused in mid-sentence (tiny.en ends fragments with '?' too)"""
    asr_queue_size: int = setting(3, name="asr.queue_size", min=1, max=100)
    """Utterances waiting for recognition; more are dropped and counted"""


class HearingSink(Protocol):
    """Where `Hearing` reports (the node: diagnostics, topics, the Respond action)."""

    def count(self, name: str) -> None: ...

    def audio(self, block: AudioBlock) -> None:
        """A block about to be listened to (to publish)."""

    def rejected(self, message: str) -> None:
        """A malformed audio block (to log, rate-limited)."""

    def transcript(self, item: HeardUtterance, result: AsrResult | None, dropped: str) -> None:
        """The end of an utterance: a question when `dropped` is "", else why it is not one."""


@dataclass
class AsrJob:
    """One recognition to run (see the module docstring on early jobs)."""

    item: HeardUtterance
    early: bool = False
    reuse: AsrJob | None = None
    stale: bool = False
    committed: bool = False
    result: AsrResult | None = None
    done: threading.Event = field(default_factory=threading.Event)


class Hearing:
    """See the module docstring."""

    def __init__(
        self,
        listener: Listener,
        asr: AsrBackend,
        options: HearingOptions,
        gate: RobotSpeechGate,
        filters: Callable[[], TranscriptFilter],  # read at each use: its settings are live
        sink: HearingSink,
    ) -> None:
        self.listener, self.asr, self.options = listener, asr, options
        self.gate, self._filters, self.sink = gate, filters, sink
        self._gate_lock = threading.Lock()
        self._blocks: deque[AudioBlock] = deque()
        self._queued_s = 0.0
        self.lossless = False  # a source that may wait for room instead of losing audio
        self._feeding = False  # False tells a waiting source thread to give up (stopping)
        self._audio_drops: deque[float] = deque()  # monotonic times of dropped blocks
        self.jobs: deque[AsrJob] = deque()
        self._early: AsrJob | None = None  # the early job of the open utterance
        self.wake = threading.Condition()

    # -- lifecycle

    def start(self, lossless: bool) -> None:
        self.listener.reset()
        self.lossless, self._feeding = lossless, True

    def stop(self) -> None:
        """Releases a source thread waiting for room; then the workers stop and `clear`."""
        with self.wake:
            self._feeding = False
            self.wake.notify_all()

    def clear(self) -> None:
        with self.wake:
            self._blocks.clear()
            self.jobs.clear()
            self._early = None
            self._queued_s = 0.0

    def notify(self) -> None:
        with self.wake:
            self.wake.notify_all()

    def recent_drops(self) -> int:
        """Audio blocks dropped in the last DROP_MEMORY_S."""
        with self.wake:
            while self._audio_drops and self._audio_drops[0] < time.monotonic() - DROP_MEMORY_S:
                self._audio_drops.popleft()
            return len(self._audio_drops)

    # -- the robot's own voice

    def robot_event(self, kind: str, at: float) -> None:
        with self._gate_lock:
            self.gate.event(kind, at)

    def set_tail(self, tail_s: float) -> None:
        with self._gate_lock:
            self.gate.tail_s = tail_s

    def _robot_spoke(self, item: HeardUtterance) -> bool:
        with self._gate_lock:
            return self.gate.speaking(item.utterance.start, item.utterance.end)

    # -- the source's thread

    def on_block(self, block: AudioBlock) -> None:
        """Queue and return at once (a lossless source waits for room)."""
        limit = self.options.queue_s
        with self.wake:
            while (
                self.lossless
                and self._feeding
                and self._blocks
                and self._queued_s + block.duration_s > limit
            ):
                self.wake.wait(0.1)
            self._blocks.append(block)
            self._queued_s += block.duration_s
            while self._queued_s > limit and len(self._blocks) > 1:
                old = self._blocks.popleft()
                self._queued_s -= old.duration_s
                self.sink.count("audio_blocks_dropped")
                self._audio_drops.append(time.monotonic())
            self.wake.notify_all()

    # -- the VAD thread

    def _take(self, items: deque, timeout: float) -> Any:
        """The oldest of `items` (None if there is none after `timeout`); a notify wakes the
        wait early, so a stopping worker does not sit out its timeout."""
        with self.wake:
            if not items:
                self.wake.wait(timeout)
            if not items:
                return None
            self.wake.notify_all()  # a lossless source may wait for this room
            return items.popleft()

    def take_block(self, timeout: float) -> AudioBlock | None:
        with self.wake:  # re-entrant: _take takes it again
            block = self._take(self._blocks, timeout)
            if block is not None:
                self._queued_s -= block.duration_s
            return block

    def handle_block(self, block: AudioBlock) -> None:
        self.sink.count("audio_blocks")
        self.sink.audio(block)
        self._settle_early()
        try:
            heard = self.listener.push_block(block)
        except AudioError as error:
            self.sink.count("audio_blocks_rejected")
            self.sink.rejected(f"rejected an audio block: {error}")
            return
        for item in heard:
            self._on_utterance(item)
        self._settle_early()

    def _settle_early(self) -> None:
        """The open utterance's early job: asked already (the utterance ends here) or overtaken
        by more speech (stale). Under the lock the ASR thread commits with."""
        with self.wake:
            early = self._early
            if early is None:
                return
            if early.committed:
                self.listener.discard_open()
                self.sink.count("utterances")
                self._early = None
            elif self.listener.segmenter.open_key != early.item.key:
                early.stale = True  # the speaker went on: that copy is not the utterance
                self._early = None

    def _on_utterance(self, item: HeardUtterance) -> None:
        u = item.utterance
        if u.dropped:  # too short: a click, not worth a transcript message
            if not u.tentative:
                self.sink.count(f"dropped_{u.dropped}")
            return
        robot_spoke = self._robot_spoke(item)
        if u.tentative:
            if not robot_spoke:
                self._early = AsrJob(item, early=True)
                self._queue_job(self._early)
            return
        self.sink.count("utterances")
        early, self._early = self._early, None
        if robot_spoke:
            self._drop(item, None, "robot_speaking")
            return
        job = AsrJob(
            item, reuse=early if early is not None and early.item.key == item.key else None
        )
        if not self._queue_job(job):
            self._drop(item, None, "asr_busy")

    def _queue_job(self, job: AsrJob) -> bool:
        size = self.options.asr_queue_size
        with self.wake:
            # A lossless file waits for recognition (an early job is only worth it when free).
            while self.lossless and self._feeding and not job.early and len(self.jobs) >= size:
                self.wake.wait(0.1)
            if len(self.jobs) >= size:
                return False
            self.jobs.append(job)
            self.wake.notify_all()
            return True

    # -- the ASR thread

    def take_job(self, timeout: float) -> AsrJob | None:
        return self._take(self.jobs, timeout)

    def handle_job(self, job: AsrJob) -> None:
        try:
            if job.early and job.stale:
                self.sink.count("early_starts_skipped")
                return
            if job.reuse is not None and job.reuse.committed:
                return  # asked when its early result came
            result = job.reuse.result if job.reuse is not None else None
            if result is None:
                # A recogniser failure raises: the worker logs it with the utterance and counts it.
                result = self.asr.transcribe(job.item.utterance.samples)
            else:
                self.sink.count("early_starts_used")
            job.result = result
        finally:
            job.done.set()
        if job.early:
            with self.wake:
                # Not for a file read faster than real time: there is no turn to take, and the
                # VAD may be far past the pause already.
                job.committed = (
                    self.options.early_end
                    and not self.lossless
                    and not job.stale
                    and sounds_finished(result.text)
                    and not self._filters().reason(
                        result.text, result.confidence, job.item.utterance.duration_s
                    )
                )
            if job.committed:
                self.sink.count("early_ends")
                self._after_asr(job.item, result)
            elif job.stale:
                self.sink.count("early_starts_wasted")
            return
        self._after_asr(job.item, result)

    def _after_asr(self, item: HeardUtterance, result: AsrResult) -> None:
        dropped = self._filters().reason(result.text, result.confidence, item.utterance.duration_s)
        # Checked again: a speech event delayed in transit may have arrived meanwhile.
        if not dropped and self._robot_spoke(item):
            dropped = "robot_speaking"
        if dropped:
            self._drop(item, result, dropped)
            return
        self.sink.count("questions")
        self.sink.transcript(item, result, "")

    def _drop(self, item: HeardUtterance, result: AsrResult | None, why: str) -> None:
        self.sink.count(f"dropped_{why}")
        self.sink.transcript(item, result, why)
