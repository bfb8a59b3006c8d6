"""One list of nodes (nodes/catalogue.py): the `nodes/*_node.py` files, read by everything that
names nodes, so that adding a node file needs no other list."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from uservlm_ros.bringup.graph import COMPOSITION, load_graph
from uservlm_ros.bringup.preflight import node_params
from uservlm_ros.cli import available_nodes
from uservlm_ros.core.errors import ConfigError
from uservlm_ros.nodes import catalogue
from uservlm_ros.nodes.container import node_names

ROOT = Path(__file__).resolve().parents[1]
NODE_FILES = sorted(path.stem for path in (ROOT / "uservlm_ros" / "nodes").glob("*_node.py"))


def test_the_list_is_the_node_files():
    assert list(catalogue.NODES) == NODE_FILES
    assert len(NODE_FILES) >= 7


def test_a_new_node_file_is_a_new_node(tmp_path):
    for name in ("camera_node", "x_node", "container", "helpers"):
        (tmp_path / f"{name}.py").write_text('"""A module."""\n')
    assert catalogue.find_nodes(tmp_path) == ("camera_node", "x_node")


def test_every_consumer_reads_the_one_list(tmp_path):
    # cli (`uservlm params`, docs_gen, the docs check)
    assert list(available_nodes()) == NODE_FILES
    # bringup: a deployment may start any node of the list, and none other
    for name in NODE_FILES:
        assert node_params(name) == {p.name: p for p in catalogue.node_module(name).PARAMS}
    config = tmp_path / "all.yaml"
    config.write_text("".join(f"{name}:\n  ros__parameters: {{}}\n" for name in NODE_FILES))
    graph = load_graph(config, use_composition=False)
    assert [spec.name for spec in graph.nodes] == NODE_FILES
    assert all(spec.executable == spec.name for spec in graph.nodes)
    config.write_text("x_node:\n  ros__parameters: {}\n")
    with pytest.raises(
        ConfigError, match=re.escape(f"unknown node 'x_node'; known: {NODE_FILES[0]}")
    ):
        load_graph(config)
    with pytest.raises(ConfigError, match="unknown node 'x_node'"):
        catalogue.node_module("x_node")


def test_composability_is_the_node_modules_own():
    expected = [n for n in NODE_FILES if hasattr(catalogue.node_module(n), "NODE")]
    assert list(catalogue.composable()) == expected
    assert "speech_node" in NODE_FILES and "speech_node" not in expected  # its cpu.nice
    assert node_names(expected) == expected  # the container takes every one of them
    # the nodes a deployment groups into one process can share one
    for members in COMPOSITION.values():
        assert set(members) <= set(expected)
