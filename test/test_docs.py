"""The README documents what the code declares: every node's parameters and the set-up."""

from __future__ import annotations

import re
from pathlib import Path

from uservlm_ros.cli import available_nodes

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_has_exactly_two_setup_commands_and_ci_runs_the_test_one():
    section = README.split("## Set-up: two commands", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^    (make \w+)", section, flags=re.MULTILINE)
    assert commands == ["make demo", "make test"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, flags=re.MULTILINE)


def test_readme_lists_every_parameter_of_every_node():
    nodes = available_nodes()
    for name, module in nodes.items():
        assert f"`{name}`" in README, f"README does not document {name}"
        for param in module.PARAMS:
            assert f"`{param.name}`" in README, f"README misses parameter {param.name} of {name}"


def test_readme_lists_every_topic_of_the_graph():
    from uservlm_ros.ros import topics

    names = [value for key, value in vars(topics).items() if key.isupper()]
    assert len(names) >= 10
    for name in names:
        assert f"`{name}`" in README, f"README does not document {name}"
