"""rosbag2 type handling: a rosbags typestore that knows uservlm's own messages, and the rclpy
class of a message type name. No rclpy import at module level."""

from __future__ import annotations

import importlib
from functools import cache
from pathlib import Path

from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from uservlm_ros.core.errors import UservlmError
from uservlm_ros.core.shipped import PACKAGE, shipped_dirs


def _msg_dirs() -> list[Path]:
    """Where the .msg files are: the source checkout, the pip package, every install prefix."""
    return [d for d in shipped_dirs("msg") if any(d.glob("*.msg"))]


@cache
def typestore():
    """The ROS 2 Kilted typestore plus uservlm/msg/* parsed from the .msg files."""
    store = get_typestore(Stores.ROS2_KILTED)
    dirs = _msg_dirs()
    if not dirs:
        raise UservlmError(
            "uservlm's .msg files were not found (source msg/, uservlm_ros/share/msg of a pip "
            "install, or share/uservlm/msg under AMENT_PREFIX_PATH); reinstall uservlm"
        )
    types = {}
    for path in sorted(dirs[0].glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"{PACKAGE}/msg/{path.stem}"))
    store.register(types)
    return store


def message_class(msgtype: str):
    """'sensor_msgs/msg/Image' -> the rclpy message class sensor_msgs.msg.Image."""
    package, kind, name = msgtype.split("/")
    try:
        return getattr(importlib.import_module(f"{package}.{kind}"), name)
    except (ImportError, AttributeError) as error:
        raise UservlmError(f"message type {msgtype} is not installed: {error}") from error


def type_name(message_cls) -> str:
    """rclpy message class -> 'pkg/msg/Name'."""
    module = message_cls.__module__.split(".")  # e.g. sensor_msgs.msg._image
    return f"{module[0]}/{module[1]}/{message_cls.__name__}"
