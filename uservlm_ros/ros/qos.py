"""The QoS profiles of uservlm's topics: one place, so publishers and subscribers always match."""

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)


def _reliable(depth: int, **policies) -> QoSProfile:
    """Reliable delivery, the newest `depth` messages kept (the shape of most topics here)."""
    return QoSProfile(
        depth=depth,
        reliability=ReliabilityPolicy.RELIABLE,
        history=HistoryPolicy.KEEP_LAST,
        **policies,
    )


def _latched(depth: int) -> QoSProfile:
    """_reliable, and transient-local: a late subscriber gets the last `depth` messages."""
    return _reliable(depth, durability=DurabilityPolicy.TRANSIENT_LOCAL)


# Camera frames: only the newest matters, losing one is better than queueing stale ones.
SENSOR_QOS = qos_profile_sensor_data
# Faces, questions, responses: every message matters.
RELIABLE_QOS = _reliable(10)
# Questions and responses: a burst must queue up, never overwrite (KEEP_LAST would silently drop
# all but the newest `depth` of 50 questions published at once).
REQUEST_QOS = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_ALL)
# Respond feedback, one message per generated token (each the whole answer so far): deep enough
# for a whole answer, so a burst of fast tokens is not overwritten before it is sent (with the
# action default of 10, the first partials of a 12-token answer were lost on a loaded host).
FEEDBACK_QOS = _reliable(256)
# Profiles: late subscribers get the current profile of each recent user.
LATCHED_QOS = _latched(20)

# Camera frames: "sensor" (best effort, as camera drivers publish) or "reliable" with a depth of
# 1 (still only the newest frame): Fast DDS loses fragments of large best-effort images (a
# 640x480 rgb8 frame is 900 KB) on a loaded host, where reliable delivery repairs them.
IMAGE_QOS = {
    "sensor": SENSOR_QOS,
    "reliable": _reliable(1),
}

# REP-155 (ROS4HRI) topics (ros/rep155.py): libhri subscribes reliable (a best-effort writer
# never reaches it), volatile for the streams and transient-local for the per-person ids: a
# transient-local writer serves both kinds.
HRI_STREAM_QOS = _reliable(1)
HRI_LATCHED_QOS = _latched(1)
# Several matches per frame and every utterance matter: deeper, never overwritten in a burst.
HRI_QUEUED_QOS = _reliable(50)
