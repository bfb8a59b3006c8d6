"""The generated parts of the docs: each node's parameter table in docs/ros_api.md.

    python -m uservlm_ros.docs_gen           # rewrite the blocks from the nodes' PARAMS
    python -m uservlm_ros.docs_gen --check   # exit 1 and name the stale blocks; write nothing

A block is the text between `<!-- params:<node> -->` and `<!-- /params:<node> -->`; everything
outside the blocks is hand-written and left alone. test/test_docs.py runs the check.
At the cli layer (it imports every node module); no node imports it.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from uservlm_ros.cli import available_nodes
from uservlm_ros.core.parameters import markdown_table

ROS_API = Path(__file__).resolve().parents[1] / "docs" / "ros_api.md"
COMMAND = "python -m uservlm_ros.docs_gen"
_BLOCK = re.compile(r"(<!-- params:(\w+) -->\n)(.*?)(<!-- /params:\2 -->)", re.DOTALL)


def params_block(node: str, nodes: dict[str, object] | None = None) -> str:
    """The generated content of a node's block (its table, framed by blank lines)."""
    nodes = available_nodes() if nodes is None else nodes
    return f"\n{markdown_table(nodes[node].PARAMS)}\n\n"


def regenerate(text: str) -> tuple[str, list[str]]:
    """`text` with every params block rebuilt, and the problems no rewrite can fix: blocks of
    unknown nodes and nodes without a block."""
    nodes = available_nodes()
    problems, seen = [], set()

    def rebuild(match: re.Match[str]) -> str:
        node = match.group(2)
        seen.add(node)
        if node not in nodes:
            problems.append(f"block params:{node} names no node (known: {', '.join(nodes)})")
            return match.group(0)
        return match.group(1) + params_block(node, nodes) + match.group(4)

    new_text = _BLOCK.sub(rebuild, text)
    for node in nodes:
        if node not in seen:
            problems.append(
                f"{node} has no block: add `<!-- params:{node} -->` and "
                f"`<!-- /params:{node} -->` to docs/ros_api.md, then run {COMMAND}"
            )
    return new_text, problems


def stale_blocks(text: str) -> list[str]:
    """Names of the nodes whose block differs from what their PARAMS generate."""
    nodes = available_nodes()
    return [
        m.group(2)
        for m in _BLOCK.finditer(text)
        if m.group(2) in nodes and m.group(3) != params_block(m.group(2), nodes)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report stale blocks, write nothing")
    parser.add_argument("--file", type=Path, default=ROS_API, help="the page to regenerate")
    args = parser.parse_args(argv)
    try:
        text = args.file.read_text()
    except OSError as error:
        print(f"{COMMAND}: cannot read {args.file}: {error.strerror}", file=sys.stderr)
        return 2
    new_text, problems = regenerate(text)
    for problem in problems:
        print(f"{COMMAND}: {problem}", file=sys.stderr)
    if args.check:
        stale = stale_blocks(text)
        if stale:
            print(f"{COMMAND}: out of date: {', '.join(stale)}; run {COMMAND}", file=sys.stderr)
        return 1 if stale or problems else 0
    if new_text != text:
        args.file.write_text(new_text)
        print(f"rewrote the parameter tables in {args.file}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
