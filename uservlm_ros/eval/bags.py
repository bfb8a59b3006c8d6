"""`uservlm record` and `uservlm replay`: rosbag2 (mcap or sqlite3) without rosbag2_py.

Messages travel as serialized CDR end to end: the recorder writes what the subscription
received, the player publishes the bytes as they are, so uservlm's own types pass unchanged.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np
from rosbags.interfaces import (
    Qos,
    QosDurability,
    QosHistory,
    QosLiveliness,
    QosReliability,
    QosTime,
)
from rosbags.rosbag2 import Reader, ReaderError, StoragePlugin, Writer

from uservlm_ros.core.errors import UservlmError
from uservlm_ros.eval.bag_types import message_class, typestore
from uservlm_ros.ros import topics

# What `uservlm record` takes by default: the whole uservlm graph.
DEFAULT_TOPICS = (
    topics.absolute(topics.IMAGE),
    topics.absolute(topics.CAMERA_INFO),
    topics.absolute(topics.FACES),
    topics.absolute(topics.PROFILE),
    topics.absolute(topics.QUESTION),
    topics.absolute(topics.RESPONSE),
    topics.absolute(topics.SPEECH_EVENTS),
    topics.absolute(topics.SPEECH),
    topics.absolute(topics.DIAGNOSTICS),
)
STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
_ZERO = QosTime(sec=0, nsec=0)


def _bag_qos(reliable: bool, latched: bool) -> Qos:
    return Qos(
        QosHistory.KEEP_LAST,
        10,
        QosReliability.RELIABLE if reliable else QosReliability.BEST_EFFORT,
        QosDurability.TRANSIENT_LOCAL if latched else QosDurability.VOLATILE,
        _ZERO,
        _ZERO,
        QosLiveliness.AUTOMATIC,
        _ZERO,
        False,
    )


def _rclpy_qos(reliable: bool, latched: bool):
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(
        depth=10,
        reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE,
    )


@contextmanager
def _ros_node(name: str):
    """A node on the process's rclpy context, initialising (and shutting down) rclpy only if
    nobody else did: the CLI owns it, a test or the demo shares its own."""
    import rclpy

    own_context = not rclpy.ok()
    if own_context:
        rclpy.init()
    node = rclpy.create_node(name)
    try:
        yield node
    finally:
        node.destroy_node()
        if own_context:
            rclpy.try_shutdown()


@dataclass
class RecordStats:
    messages: int = 0
    bytes: int = 0
    topics: int = 0


class Recorder:
    """Subscribes (raw) to topics as they appear and writes every message to a bag."""

    def __init__(self, node, writer: Writer, topics: Sequence[str]) -> None:
        self.node = node
        self.writer = writer
        self.wanted = set(topics)
        self.stats = RecordStats()
        self._lock = threading.Lock()
        self._subscribed: set[str] = set()
        node.create_timer(0.2, self.discover)
        self.discover()

    def discover(self) -> None:
        """Subscribe to every wanted topic that now has a publisher, with a matching QoS."""
        for topic, types in self.node.get_topic_names_and_types():
            if topic not in self.wanted or topic in self._subscribed:
                continue
            publishers = self.node.get_publishers_info_by_topic(topic)
            if not publishers:
                continue
            from rclpy.qos import DurabilityPolicy, ReliabilityPolicy

            # Reliable/latched only if every publisher offers it, or they would not match.
            reliable = all(
                p.qos_profile.reliability == ReliabilityPolicy.RELIABLE for p in publishers
            )
            latched = all(
                p.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL for p in publishers
            )
            msgtype = types[0]
            connection = self.writer.add_connection(
                topic,
                msgtype,
                typestore=typestore(),
                offered_qos_profiles=[_bag_qos(reliable, latched)],
            )
            self.node.create_subscription(
                message_class(msgtype),
                topic,
                self._writer_for(connection),
                _rclpy_qos(reliable, latched),
                raw=True,
            )
            self._subscribed.add(topic)
            self.stats.topics += 1

    def _writer_for(self, connection) -> Callable[[bytes], None]:
        def write(data: bytes) -> None:
            with self._lock:
                self.writer.write(connection, time.time_ns(), data)
                self.stats.messages += 1
                self.stats.bytes += len(data)

        return write


def record(
    output: Path,
    topics: Sequence[str] = DEFAULT_TOPICS,
    storage: str = "mcap",
    duration_s: float | None = None,
    stop: threading.Event | None = None,
    progress: TextIO | None = sys.stderr,
) -> RecordStats:
    """Record until `duration_s` has passed, `stop` is set, or Ctrl-C."""
    from rclpy.executors import SingleThreadedExecutor

    output = Path(output)
    if output.exists():
        raise UservlmError(f"{output} exists; rosbag2 writes a new folder")
    stop = stop or threading.Event()
    stats = RecordStats()
    with _ros_node("uservlm_recorder") as node:
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        started = time.monotonic()
        try:
            with Writer(output, version=9, storage_plugin=STORAGES[storage]) as writer:
                stats = Recorder(node, writer, topics).stats
                last_report = 0.0
                while not stop.is_set():
                    executor.spin_once(timeout_sec=0.05)
                    elapsed = time.monotonic() - started
                    if duration_s is not None and elapsed >= duration_s:
                        break
                    if progress is not None and elapsed - last_report >= 1.0:
                        last_report = elapsed
                        progress.write(
                            f"\rrecording {output.name}: {elapsed:6.1f} s, {stats.topics} "
                            f"topics, {stats.messages} messages, {stats.bytes / 1e6:.1f} MB "
                        )
                        progress.flush()
        except KeyboardInterrupt:
            pass
        finally:
            executor.remove_node(node)
    if progress is not None:
        progress.write("\n")
    return stats


def write_image_bag(
    path: Path,
    frames: Iterable[tuple[float, np.ndarray]],
    topic: str = topics.absolute(topics.IMAGE),
    frame_id: str = "camera",
    storage: str = "mcap",
) -> int:
    """Write (stamp seconds, RGB array) frames as sensor_msgs/Image; returns the count."""
    from rclpy.serialization import serialize_message
    from std_msgs.msg import Header

    from uservlm_ros.ros.conversions import rgb_to_image, seconds_to_stamp

    count = 0
    with Writer(Path(path), version=9, storage_plugin=STORAGES[storage]) as writer:
        connection = writer.add_connection(
            topic,
            "sensor_msgs/msg/Image",
            typestore=typestore(),
            offered_qos_profiles=[_bag_qos(False, False)],
        )
        for stamp, rgb in frames:
            header = Header(stamp=seconds_to_stamp(stamp), frame_id=frame_id)
            writer.write(connection, int(stamp * 1e9), serialize_message(rgb_to_image(rgb, header)))
            count += 1
    return count


@dataclass(frozen=True)
class BagMessage:
    topic: str
    msgtype: str
    timestamp_ns: int
    data: bytes


def iter_bag(path: Path, topics: Iterable[str] | None = None) -> Iterator[BagMessage]:
    """A bag's messages (optionally of some topics) in time order, read lazily."""
    wanted = set(topics) if topics is not None else None
    try:
        with Reader(Path(path)) as reader:
            connections = [c for c in reader.connections if wanted is None or c.topic in wanted]
            if not connections:  # rosbags reads every connection when given none
                return
            for c, t, data in reader.messages(connections=connections):
                yield BagMessage(c.topic, c.msgtype, t, bytes(data))
    except (ReaderError, OSError) as error:
        raise UservlmError(f"cannot read bag {path}: {error}") from error


def _latched(connection) -> bool:
    profiles = getattr(connection.ext, "offered_qos_profiles", None) or []
    return any(getattr(p, "durability", None) == QosDurability.TRANSIENT_LOCAL for p in profiles)


def due_time(timestamp_ns: int, first_ns: int, rate: float) -> float:
    """Seconds after playback start at which a message recorded at timestamp_ns is due."""
    return (timestamp_ns - first_ns) / 1e9 / rate


def replay(
    path: Path,
    rate: float = 1.0,
    loop: bool = False,
    start_offset_s: float = 0.0,
    topics: Iterable[str] | None = None,
    stop: threading.Event | None = None,
    progress: TextIO | None = sys.stderr,
) -> int:
    """Publish a bag's messages with their original timing; returns how many were published."""
    if rate <= 0:
        raise UservlmError(f"rate must be > 0, got {rate}")
    stop = stop or threading.Event()
    published = 0
    wanted = set(topics) if topics is not None else None
    with _ros_node("uservlm_player") as node:
        try:
            with Reader(Path(path)) as reader:
                connections = [c for c in reader.connections if wanted is None or c.topic in wanted]
                publishers = {
                    c.id: node.create_publisher(
                        message_class(c.msgtype), c.topic, _rclpy_qos(True, _latched(c))
                    )
                    for c in connections
                }
                if not connections:
                    raise UservlmError(f"{path} has none of the topics {sorted(wanted)}")
                first_ns = reader.start_time + int(start_offset_s * 1e9)
                time.sleep(0.5)  # let subscribers discover the new publishers
                while not stop.is_set():
                    started = time.monotonic()
                    for connection, timestamp, data in reader.messages(connections, start=first_ns):
                        due = started + due_time(timestamp, first_ns, rate)
                        if stop.wait(max(0.0, due - time.monotonic())):
                            break
                        publishers[connection.id].publish(bytes(data))
                        published += 1
                        if progress is not None and published % 50 == 0:
                            progress.write(f"\rreplayed {published} messages ")
                            progress.flush()
                    if not loop:
                        break
        except ReaderError as error:
            raise UservlmError(f"cannot read bag {path}: {error}") from error
        except KeyboardInterrupt:
            pass
    if progress is not None:
        progress.write(f"\rreplayed {published} messages\n")
    return published
