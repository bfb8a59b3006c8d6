"""container: several uservlm nodes in one process, handing messages to each other directly.

    python -m uservlm_ros.nodes.container camera_node face_crop_node user_profiler_node \\
        --ros-args --params-file config/demo.yaml

Each node keeps its name, its section of the params file, its topics, services, lifecycle and
diagnostics. What changes: camera frames and faces go from node to node as Python objects
(ros/intra_process.py) instead of through DDS and another process's executor, and the nodes share
one executor. Nodes start in the order given (producers first); one that fails to start stops
the container (exit code 1). It holds the nodes whose module defines `NODE`
(nodes/catalogue.py). `uservlm run` and the launch files start the perception nodes this
way unless `use_composition:=false`.

Per-node ROS arguments (ROS 2's `node_name:` prefix): `-r face_crop_node:camera/image_raw:=x`.
A `-p name:=value` without a prefix reaches every node of the container; per-node values belong in
a params file.
"""

from __future__ import annotations

import sys

from uservlm_ros.nodes.catalogue import composable, is_composable, node_module
from uservlm_ros.ros.node_main import run_nodes


def node_names(argv: list[str]) -> list[str]:
    """The node names before `--ros-args`; ValueError with the reason when they are unusable."""
    names = argv[: argv.index("--ros-args")] if "--ros-args" in argv else list(argv)
    if not names:
        raise ValueError(
            f"name the nodes to run, e.g. camera_node face_crop_node; composable: "
            f"{', '.join(composable())}"
        )
    unknown = [name for name in names if not is_composable(name)]
    if unknown:
        raise ValueError(
            f"cannot run {', '.join(unknown)} in a container; composable: {', '.join(composable())}"
        )
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"{', '.join(repeated)} named twice; each node runs once")
    return names


def main(args=None):
    argv = sys.argv[1:] if args is None else args
    try:
        names = node_names(argv)
    except ValueError as error:
        print(f"container: {error}", file=sys.stderr)
        sys.exit(2)
    factories = [node_module(name).NODE for name in names]
    sys.exit(run_nodes(factories, None if args is None else ["container", *args]))


if __name__ == "__main__":
    main()
