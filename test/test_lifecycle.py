"""The model-hosting nodes go through the whole lifecycle: I/O exists only while active."""

from __future__ import annotations

import pytest
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter

from uservlm_ros.nodes.face_crop_node import FaceCropNode
from uservlm_ros.nodes.user_profiler_node import UserProfilerNode
from uservlm_ros.nodes.vlm_responder_node import VlmResponderNode
from uservlm_ros.ros import topics

SUCCESS = TransitionCallbackReturn.SUCCESS
CASES = [
    (FaceCropNode, [], topics.FACES),
    (UserProfilerNode, [], topics.PROFILE),
    (VlmResponderNode, [Parameter("responder.backend", value="fallback")], topics.RESPONSE),
]


@pytest.mark.parametrize(("node_class", "overrides", "output"), CASES)
def test_configure_activate_deactivate_cleanup_and_again(
    rclpy_session, node_class, overrides, output
):
    # Renamed: a destroyed node's name can linger in this process's DDS graph data, and a later
    # test's `uservlm run` would take it for a graph already running (graph_probe.py).
    rename = ["--ros-args", "-r", f"__node:=lifecycle_test_{node_class.__name__.lower()}"]
    node = node_class(parameter_overrides=overrides, cli_args=rename)
    try:

        def outputs() -> int:
            return len(node.get_publishers_info_by_topic(output))

        assert node.trigger_configure() == SUCCESS and outputs() == 0
        for _ in range(2):  # a second round proves deactivate/cleanup left nothing behind
            assert node.trigger_activate() == SUCCESS and outputs() == 1
            assert node.trigger_deactivate() == SUCCESS and outputs() == 0
            assert node.trigger_cleanup() == SUCCESS and node.diagnostics is None
            assert node.trigger_configure() == SUCCESS and node.diagnostics is not None
        assert node.trigger_shutdown() == SUCCESS
    finally:
        node.destroy_node()
