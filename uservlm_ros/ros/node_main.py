"""The entry point every node executable shares: DDS profile, init, autostart, spin, exit code."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from uservlm_ros.core.errors import UservlmError
from uservlm_ros.core.shipped import shipped_file
from uservlm_ros.ros.param_declare import AUTOSTART

FASTDDS_PROFILE_VARIABLE = "FASTDDS_DEFAULT_PROFILES_FILE"


def use_uservlm_dds_profile() -> None:
    """Give Fast DDS uservlm's transport profile (config/fastdds.xml: a shared-memory segment
    large enough for camera frames), unless the user named a profile file already. Must run
    before rclpy creates its first node."""
    if os.environ.get(FASTDDS_PROFILE_VARIABLE):
        return
    profile = shipped_file("config", "fastdds.xml")
    if profile is not None:
        os.environ[FASTDDS_PROFILE_VARIABLE] = str(profile)


def run_node(node_factory, args: list[str] | None = None, single_threaded: bool = False) -> int:
    """Entry point of every node executable: init, (auto)start, spin, shut down cleanly.

    Returns the process exit code: 1 when a lifecycle node fails to configure or activate, so a
    launcher can report which node did not start. `single_threaded` spins a SingleThreadedExecutor:
    for a node whose callbacks are all short, it costs a few times less CPU when idle.
    """
    return run_nodes([node_factory], args, single_threaded)


def node_main(node_factory, single_threaded: bool = False) -> Callable[[list[str] | None], None]:
    """A node module's `main`, the entry point of its executable (`setup.py` and
    `CMakeLists.txt` name `<module>:main`): run_node, then exit with its code."""

    def main(args: list[str] | None = None) -> None:
        sys.exit(run_node(node_factory, args, single_threaded))

    return main


def run_nodes(node_factories, args: list[str] | None = None, single_threaded: bool = False) -> int:
    """run_node for several nodes in one process (a container): built and (auto)started in the
    given order, so publishers come before their subscribers (ros/intra_process.py), and spun
    by one executor. A node that fails to start stops them all (exit code 1)."""
    import rclpy
    from rclpy.executors import (
        ExternalShutdownException,
        MultiThreadedExecutor,
        SingleThreadedExecutor,
    )
    from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn

    use_uservlm_dds_profile()
    rclpy.init(args=args)
    exit_code = 0
    nodes = []
    factory = None
    try:
        for factory in node_factories:
            node = factory()
            nodes.append(node)
            if isinstance(node, LifecycleNode) and node.get_parameter(AUTOSTART.name).value:
                for transition in (node.trigger_configure, node.trigger_activate):
                    if transition() != TransitionCallbackReturn.SUCCESS:
                        node.get_logger().fatal(f"{transition.__name__[8:]} failed; exiting")
                        return 1
        executor = SingleThreadedExecutor() if single_threaded else MultiThreadedExecutor()
        for node in nodes:
            executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except UservlmError as error:  # a bad parameter or unusable source: say what, no traceback
        print(f"{getattr(factory, '__name__', 'node')}: {error}", file=sys.stderr)
        exit_code = 1
    finally:
        for node in reversed(nodes):
            node.destroy_node()
        rclpy.try_shutdown()
    return exit_code
