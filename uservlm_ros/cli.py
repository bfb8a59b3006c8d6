"""The `uservlm` command: one entry point for the tools around the node graph.

uservlm params [NODE]        print the parameter table of the nodes (README "ROS API")
"""

from __future__ import annotations

import argparse
import importlib
import sys

from uservlm_ros import __version__

# node executable -> module defining PARAMS (the description of its parameters)
NODE_MODULES = {
    "camera_node": "uservlm_ros.nodes.camera_node",
    "face_crop_node": "uservlm_ros.nodes.face_crop_node",
    "user_profiler_node": "uservlm_ros.nodes.user_profiler_node",
    "vlm_responder_node": "uservlm_ros.nodes.vlm_responder_node",
    "naoqi_bridge_node": "uservlm_ros.nodes.naoqi_bridge_node",
}


def available_nodes() -> dict[str, object]:
    """The node modules that exist in this installation, imported."""
    found = {}
    for name, module in NODE_MODULES.items():
        try:
            found[name] = importlib.import_module(module)
        except ModuleNotFoundError as error:
            if error.name != module:
                raise
    return found


def _cmd_params(args: argparse.Namespace) -> int:
    from uservlm_ros.parameters import markdown_table

    nodes = available_nodes()
    names = [args.node] if args.node else list(nodes)
    for name in names:
        if name not in nodes:
            print(f"unknown node {name!r}; known: {', '.join(nodes)}", file=sys.stderr)
            return 2
        print(f"#### `{name}` parameters\n\n{markdown_table(nodes[name].PARAMS)}\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="uservlm", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"uservlm {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    params = commands.add_parser("params", help="print the nodes' parameter tables (Markdown)")
    params.add_argument("node", nargs="?", help="one node, e.g. face_crop_node")
    params.set_defaults(func=_cmd_params)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
