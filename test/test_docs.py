"""The docs document what the code declares: set-up, nodes, parameters, topics, interfaces, CLI.

README.md is the front door; docs/ros_api.md is the reference the code is checked against. A node,
parameter, topic, message field or command added without its documentation fails here.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from uservlm_ros import docs_gen
from uservlm_ros.cli import available_nodes, build_parser

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
ROS_API_PATH = ROOT / "docs" / "ros_api.md"
ROS_API = ROS_API_PATH.read_text()
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
INTERFACES = [
    *sorted((ROOT / "msg").glob("*.msg")),
    *sorted((ROOT / "action").glob("*.action")),
    *sorted((ROOT / "srv").glob("*.srv")),
]


def test_readme_has_exactly_two_setup_commands_and_ci_runs_the_test_one():
    section = README.split("## Set-up: two commands", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^    (make \w+)", section, flags=re.MULTILINE)
    assert commands == ["make demo", "make test"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, flags=re.MULTILINE)


def test_readme_links_every_docs_page():
    for page in PAGES[1:]:
        assert f"](docs/{page.name})" in README, f"README.md does not link docs/{page.name}"


def test_parameter_tables_are_generated_from_params():
    _, problems = docs_gen.regenerate(ROS_API)
    stale = docs_gen.stale_blocks(ROS_API)
    assert not problems, "; ".join(problems)
    assert not stale, (
        f"docs/ros_api.md: the parameter tables of {', '.join(stale)} differ from their PARAMS; "
        f"run `{docs_gen.COMMAND}`"
    )


def test_ros_api_documents_every_node_and_parameter():
    for name, module in available_nodes().items():
        assert f"`{name}`" in ROS_API, f"docs/ros_api.md does not document {name}"
        for param in module.PARAMS:
            assert f"`{param.name}`" in ROS_API, f"docs/ros_api.md misses {param.name} of {name}"


def test_ros_api_documents_every_topic_of_the_graph():
    from uservlm_ros.ros import topics

    names = [value for key, value in vars(topics).items() if key.isupper()]
    assert len(names) >= 10
    for name in names:
        assert f"`{name}`" in ROS_API, f"docs/ros_api.md does not document topic {name}"


def _field_names(path: Path) -> list[str]:
    """Field and constant names of a .msg/.action file: `TYPE NAME [= VALUE | DEFAULT]`."""
    names = []
    for line in path.read_text().splitlines():
        code = line.split("#", 1)[0].strip()
        if code and code != "---":
            names.append(code.split()[1].split("=")[0])
    return names


def _section(text: str, heading: str) -> str:
    """The text under `### heading` up to the next heading of level 1-3."""
    start = text.index(f"### {heading}\n")
    rest = text[start + len(heading) + 5 :]
    end = re.search(r"^#{1,3} ", rest, flags=re.MULTILINE)
    return rest[: end.start()] if end else rest


@pytest.mark.parametrize("path", INTERFACES, ids=lambda p: p.name)
def test_ros_api_documents_every_field_of_every_interface(path: Path):
    kind = path.suffix[1:]  # msg, action or srv
    heading = f"`uservlm/{kind}/{path.stem}`"
    assert f"### {heading}\n" in ROS_API, f"docs/ros_api.md has no section ### {heading}"
    section = _section(ROS_API, heading)
    names = _field_names(path)
    assert names, f"no fields parsed from {path.name}"
    missing = [name for name in names if f"`{name}`" not in section]
    assert not missing, f"docs/ros_api.md, section {heading}, misses {', '.join(missing)}"


def test_every_cli_command_is_documented():
    subparsers = next(
        a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)
    )
    docs = "\n".join(page.read_text() for page in PAGES)
    assert len(subparsers.choices) >= 8
    for command in subparsers.choices:
        assert re.search(rf"uservlm {re.escape(command)}\b", docs), (
            f"no page in README.md or docs/ shows `uservlm {command}`"
        )


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_point_to_existing_files(page: Path):
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # a URL or an anchor in the same page
        path = (page.parent / target.split("#", 1)[0]).resolve()
        assert path.exists(), f"{page.relative_to(ROOT)} links {target}, which does not exist"


def test_docs_never_point_outside_the_repository():
    for page in PAGES:
        assert "../shared" not in page.read_text(), f"{page.relative_to(ROOT)} names ../shared"
