"""Turns a deployment (uservlm_ros.bringup.graph) into a launch_ros LaunchDescription.

Used by launch/*.launch.py on machines with a ROS 2 install; `launch` and `launch_ros` are
imported lazily because they do not exist as PyPI wheels (`uservlm run` covers that case from
the same graph description).
"""

from __future__ import annotations

import atexit
from pathlib import Path

from uservlm_ros.bringup.graph import (
    COMPOSITION_ARGUMENT,
    COMPOSITION_DESCRIPTION,
    CONTAINER_EXECUTABLE,
    LAUNCH_ARGUMENTS,
    PACKAGE,
    Process,
    composition_enabled,
    launch_overrides,
    load_graph,
)
from uservlm_ros.bringup.preflight import check_graph


def _config_dir() -> Path:
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory(PACKAGE)) / "config"
    except (ImportError, LookupError, OSError):  # not installed by colcon: a source checkout
        return Path(__file__).resolve().parents[2] / "config"


def deployment_launch_description(deployment: str):
    """The LaunchDescription of `config/<deployment>.yaml`, with the shared launch arguments."""
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    def process_action(process: Process, params_file: str):
        spec = process.nodes[0]
        if not process.is_container:
            return Node(
                package=PACKAGE,
                executable=spec.executable,
                name=spec.name,
                namespace=spec.namespace or None,
                parameters=[params_file, spec.overrides],
                output="screen",
                emulate_tty=True,
            )
        # No name= (it would rename every node of the container); the container's own ROS
        # arguments carry the namespace and the per-node overrides file.
        return Node(
            package=PACKAGE,
            executable=CONTAINER_EXECUTABLE,
            arguments=[*process.node_names(), *process.ros_args(params_file)],
            output="screen",
            emulate_tty=True,
        )

    def nodes(context):
        values = {name: LaunchConfiguration(name).perform(context) for name in LAUNCH_ARGUMENTS}
        config = LaunchConfiguration("config").perform(context)
        namespace = LaunchConfiguration("namespace").perform(context)
        graph = load_graph(
            config,
            launch_overrides(config, values),
            namespace=namespace,
            use_composition=composition_enabled(
                LaunchConfiguration(COMPOSITION_ARGUMENT).perform(context)
            ),
        )
        check_graph(graph)  # a bad --set value or VLM path: refused before any node starts
        # The nodes read these params files when they start; the launch process removes them
        # when it exits.
        atexit.register(graph.remove_temporary_files)
        return [process_action(process, str(graph.params_file)) for process in graph.processes]

    arguments = [
        DeclareLaunchArgument(
            "config",
            default_value=str(_config_dir() / f"{deployment}.yaml"),
            description="ROS 2 params file describing the deployment",
        ),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of all nodes"),
        DeclareLaunchArgument(
            COMPOSITION_ARGUMENT, default_value="true", description=COMPOSITION_DESCRIPTION
        ),
    ]
    arguments += [
        DeclareLaunchArgument(name, default_value="", description=argument.description)
        for name, argument in LAUNCH_ARGUMENTS.items()
    ]
    return LaunchDescription([*arguments, OpaqueFunction(function=nodes)])
