"""`uservlm record` and `uservlm replay`: rosbag2 (mcap or sqlite3) without rosbag2_py.

Messages travel as serialized CDR end to end: the recorder writes what the subscription
received, the player publishes the bytes as they are, so uservlm's own types pass unchanged.

Camera frames are the exception: raw VGA is ~14 MB/s, so by default (`images="jpeg"`) the
recorder stores each sensor_msgs/Image as a JPEG sensor_msgs/CompressedImage on
`<topic>/compressed` (image_transport's name). Replay decodes them back to Image on `<topic>`
for the live graph, and `uservlm eval` reads either form (`iter_frames`).
"""

from __future__ import annotations

import signal
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
    topics.absolute(topics.AUDIO),
    topics.absolute(topics.TRANSCRIPT),
    topics.absolute(topics.DIAGNOSTICS),
)
AUDIO = "/uservlm/audio"  # uservlm/AudioChunk, when a microphone was recorded
# What `uservlm replay` publishes by default: what the robot sensed. The recorded outputs
# (faces, profiles, questions, responses, speech) would reach a live graph as if new: the bridge
# would say old answers again and old track ids would mix with live ones.
COMPRESSED = "/compressed"  # suffix of a CompressedImage topic beside its raw one
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
IMAGE_TYPE = "sensor_msgs/msg/Image"
SENSOR_TOPICS = (
    topics.absolute(topics.IMAGE),
    topics.absolute(topics.IMAGE) + COMPRESSED,
    topics.absolute(topics.CAMERA_INFO),
    AUDIO,
)
IMAGE_MODES = ("jpeg", "raw", "both")  # how `record` stores camera frames
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


@contextmanager
def _stop_on_signals(stop: threading.Event):
    """SIGINT and SIGTERM set `stop`, so the loop ends between two messages and the bag or the
    publishers close normally (rclpy's own handler would invalidate the context under a
    publish). Only the main thread can install handlers; elsewhere, the caller's `stop` rules."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, lambda *_: stop.set())
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@dataclass
class RecordStats:
    messages: int = 0
    bytes: int = 0
    topics: int = 0
    skipped: int = 0  # frames that could not be compressed (bad encoding or size)


def _each(callbacks: Sequence[Callable[[bytes], None]]) -> Callable[[bytes], None]:
    def call(data: bytes) -> None:
        for callback in callbacks:
            callback(data)

    return call


def compress_image(image, quality: int = 90):
    """sensor_msgs/Image -> JPEG sensor_msgs/CompressedImage with the same header."""
    import cv2
    from sensor_msgs.msg import CompressedImage

    from uservlm_ros.ros.conversions import image_to_rgb

    rgb = image_to_rgb(image)
    ok, encoded = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok:
        raise UservlmError(f"JPEG encoding failed for a {rgb.shape[1]}x{rgb.shape[0]} frame")
    # image_transport's format string: the original encoding, then what the bytes hold.
    return CompressedImage(
        header=image.header,
        format=f"{image.encoding}; jpeg compressed bgr8",
        data=encoded.tobytes(),
    )


def decompress_image(compressed):
    """JPEG/PNG sensor_msgs/CompressedImage -> (h, w, 3) uint8 RGB; UservlmError if unreadable."""
    import cv2

    data = np.frombuffer(bytes(compressed.data), dtype=np.uint8)
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if bgr is None:
        raise UservlmError(f"compressed image ({compressed.format!r}) cannot be decoded")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


class Recorder:
    """Subscribes (raw) to topics as they appear and writes every message to a bag."""

    def __init__(
        self,
        node,
        writer: Writer,
        topics: Sequence[str],
        images: str = "jpeg",
        jpeg_quality: int = 90,
    ) -> None:
        if images not in IMAGE_MODES:
            raise UservlmError(f"images must be one of {IMAGE_MODES}, got {images!r}")
        self.node = node
        self.writer = writer
        # Relative names (uservlm/audio) resolve against the recorder's namespace, as a node's do.
        self.wanted = {node.resolve_topic_name(topic) for topic in topics}
        self.images = images
        self.jpeg_quality = jpeg_quality
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
            qos = _rclpy_qos(reliable, latched)
            offered = [_bag_qos(reliable, latched)]
            store = typestore()
            writers = []
            if msgtype != IMAGE_TYPE or self.images in ("raw", "both"):
                connection = self.writer.add_connection(
                    topic, msgtype, typestore=store, offered_qos_profiles=offered
                )
                writers.append(self._writer_for(connection))
            if msgtype == IMAGE_TYPE and self.images in ("jpeg", "both"):
                connection = self.writer.add_connection(
                    topic + COMPRESSED,
                    COMPRESSED_TYPE,
                    typestore=store,
                    offered_qos_profiles=offered,
                )
                writers.append(self._compressor_for(connection))
            self.node.create_subscription(
                message_class(msgtype),
                topic,
                writers[0] if len(writers) == 1 else _each(writers),
                qos,
                raw=True,
            )
            self._subscribed.add(topic)
            self.stats.topics += len(writers)

    def _compressor_for(self, connection) -> Callable[[bytes], None]:
        from rclpy.serialization import deserialize_message, serialize_message
        from sensor_msgs.msg import Image

        write = self._writer_for(connection)

        def compress(data: bytes) -> None:
            image = deserialize_message(data, Image)
            try:
                compressed = compress_image(image, self.jpeg_quality)
            except UservlmError as error:  # an unusable frame: say so, keep recording
                self.stats.skipped += 1
                self.node.get_logger().warning(
                    f"frame not recorded: {error}", throttle_duration_sec=5.0
                )
                return
            write(serialize_message(compressed))

        return compress

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
    images: str = "jpeg",
    jpeg_quality: int = 90,
) -> RecordStats:
    """Record until `duration_s` has passed, `stop` is set, SIGINT or SIGTERM. Camera frames
    (sensor_msgs/Image) are stored as `images` says: jpeg (on <topic>/compressed), raw, both."""
    from rclpy.executors import SingleThreadedExecutor

    output = Path(output)
    if output.exists():
        raise UservlmError(f"{output} exists; rosbag2 writes a new folder")
    if images not in IMAGE_MODES:
        raise UservlmError(f"images must be one of {', '.join(IMAGE_MODES)}, got {images!r}")
    if not 1 <= jpeg_quality <= 100:
        raise UservlmError(f"JPEG quality must be 1..100, got {jpeg_quality}")
    stop = stop or threading.Event()
    stats = RecordStats()
    with _ros_node("uservlm_recorder") as node, _stop_on_signals(stop):
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        started = time.monotonic()
        try:
            with Writer(output, version=9, storage_plugin=STORAGES[storage]) as writer:
                stats = Recorder(node, writer, topics, images, jpeg_quality).stats
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
    others: Iterable[tuple[str, float, object]] = (),
) -> int:
    """Write (stamp seconds, RGB array) frames, in time order, as sensor_msgs/Image, and among
    them `others` (topic, stamp seconds, rclpy message: what live nodes would have added, e.g.
    profiles); returns the count of frames."""
    import heapq

    from rclpy.serialization import serialize_message
    from std_msgs.msg import Header

    from uservlm_ros.eval.bag_types import type_name
    from uservlm_ros.ros.conversions import rgb_to_image, seconds_to_stamp

    count = 0

    def images():
        nonlocal count
        for stamp, rgb in frames:
            count += 1
            header = Header(stamp=seconds_to_stamp(stamp), frame_id=frame_id)
            yield stamp, topic, rgb_to_image(rgb, header)

    extra = sorted(((stamp, name, message) for name, stamp, message in others), key=lambda m: m[0])
    with Writer(Path(path), version=9, storage_plugin=STORAGES[storage]) as writer:
        connections = {}
        # A frame goes before the messages with its stamp, as it came before them live.
        for stamp, name, message in heapq.merge(images(), extra, key=lambda m: m[0]):
            if name not in connections:
                connections[name] = writer.add_connection(
                    name,
                    type_name(type(message)),
                    typestore=typestore(),
                    offered_qos_profiles=[_bag_qos(False, False)],
                )
            writer.write(connections[name], int(stamp * 1e9), serialize_message(message))
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


def frame_source(path: Path, topic: str) -> tuple[str, int]:
    """The bag topic holding the camera frames of `topic` (itself, raw, or else
    `<topic>/compressed`) and how many there are, from the bag's index."""
    try:
        with open_bag(path) as reader:
            counts: dict[str, int] = {}
            for c in reader.connections:
                counts[c.topic] = counts.get(c.topic, 0) + c.msgcount
    except (ReaderError, OSError) as error:
        raise UservlmError(f"cannot read bag {path}: {error}") from error
    for candidate in (topic, topic + COMPRESSED):
        if counts.get(candidate):
            return candidate, counts[candidate]
    return topic, 0


def iter_frames(path: Path, topic: str) -> Iterator[tuple[float, np.ndarray]]:
    """(stamp seconds, RGB) of the camera frames of `topic`, raw or JPEG-compressed."""
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import CompressedImage, Image

    from uservlm_ros.ros.conversions import image_to_rgb, stamp_to_seconds

    source, _ = frame_source(path, topic)
    for message in iter_bag(path, [source]):
        if message.msgtype == COMPRESSED_TYPE:
            compressed = deserialize_message(message.data, CompressedImage)
            yield stamp_to_seconds(compressed.header.stamp), decompress_image(compressed)
        else:
            image = deserialize_message(message.data, Image)
            yield stamp_to_seconds(image.header.stamp), image_to_rgb(image)


def _latched(connection) -> bool:
    profiles = getattr(connection.ext, "offered_qos_profiles", None) or []
    return any(getattr(p, "durability", None) == QosDurability.TRANSIENT_LOCAL for p in profiles)


def due_time(timestamp_ns: int, first_ns: int, rate: float) -> float:
    """Seconds after playback start at which a message recorded at timestamp_ns is due."""
    return (timestamp_ns - first_ns) / 1e9 / rate


def open_bag(path: Path) -> Reader:
    """A rosbags Reader (not yet opened) for `path`; UservlmError if it is not a bag."""
    path = Path(path)
    if not path.exists():
        raise UservlmError(f"cannot read bag {path}: no such file or folder")
    try:
        return Reader(path)
    except (ReaderError, OSError) as error:
        raise UservlmError(f"cannot read bag {path}: {error}") from error


def replay(
    path: Path,
    rate: float = 1.0,
    loop: bool = False,
    start_offset_s: float = 0.0,
    topics: Iterable[str] | None = None,
    stop: threading.Event | None = None,
    progress: TextIO | None = sys.stderr,
    outputs: bool = False,
) -> int:
    """Publish a bag's messages with their original timing; returns how many were published.

    Publishes `topics` if given, else the sensor topics (SENSOR_TOPICS), plus every other
    recorded topic when `outputs` is true.
    """
    if rate <= 0:
        raise UservlmError(f"rate must be > 0, got {rate}")
    stop = stop or threading.Event()
    published = skipped = 0
    if topics is not None:
        wanted: set[str] | None = set(topics)
    else:
        wanted = None if outputs else set(SENSOR_TOPICS)
    reader = open_bag(path)
    with _ros_node("uservlm_player") as node, _stop_on_signals(stop):
        try:
            with reader:
                connections = [c for c in reader.connections if wanted is None or c.topic in wanted]
                if not connections:
                    recorded = sorted({c.topic for c in reader.connections})
                    hint = "" if outputs or topics else "; --outputs replays the recorded outputs"
                    raise UservlmError(
                        f"{path} has none of the topics {sorted(wanted or [])} "
                        f"(it has {', '.join(recorded) or 'no topics'}){hint}"
                    )
                # JPEG frames go out decoded, as Image on the raw topic the live graph reads,
                # unless the bag has that raw topic too (`record --images both`).
                raw_topics = {c.topic for c in connections if c.msgtype != COMPRESSED_TYPE}
                decoded = {
                    c.id
                    for c in connections
                    if c.msgtype == COMPRESSED_TYPE and c.topic.endswith(COMPRESSED)
                }
                connections = [
                    c
                    for c in connections
                    if c.id not in decoded or c.topic[: -len(COMPRESSED)] not in raw_topics
                ]
                publishers = {
                    c.id: node.create_publisher(
                        message_class(IMAGE_TYPE if c.id in decoded else c.msgtype),
                        c.topic[: -len(COMPRESSED)] if c.id in decoded else c.topic,
                        _rclpy_qos(True, _latched(c)),
                    )
                    for c in connections
                }
                first_ns = reader.start_time + int(start_offset_s * 1e9)
                stop.wait(0.5)  # let subscribers discover the new publishers
                while not stop.is_set():
                    started = time.monotonic()
                    for connection, timestamp, data in reader.messages(connections, start=first_ns):
                        due = started + due_time(timestamp, first_ns, rate)
                        if stop.wait(max(0.0, due - time.monotonic())):
                            break
                        if connection.id in decoded:
                            data = _decoded_frame(bytes(data))
                            if data is None:
                                skipped += 1
                                continue
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
    if skipped:
        sys.stderr.write(f"{skipped} compressed frames could not be decoded and were skipped\n")
    return published


def _decoded_frame(data: bytes) -> bytes | None:
    """A serialized CompressedImage -> the serialized Image (rgb8), or None if undecodable."""
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import CompressedImage

    from uservlm_ros.ros.conversions import rgb_to_image

    compressed = deserialize_message(data, CompressedImage)
    try:
        rgb = decompress_image(compressed)
    except UservlmError:
        return None
    return serialize_message(rgb_to_image(rgb, compressed.header))
