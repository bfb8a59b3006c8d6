"""pip installation of the uservlm_ros Python package (colcon builds use CMakeLists.txt)."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
# One console script per node file, so `ros2 run uservlm <x>_node` (colcon) and
# `uservlm-<x>-node` (pip) start the same code.
NODE_SCRIPTS = [
    f"uservlm-{path.stem.replace('_', '-')}=uservlm_ros.nodes.{path.stem}:main"
    for path in sorted((HERE / "uservlm_ros" / "nodes").glob("*_node.py"))
]

setup(
    name="uservlm-ros",
    version="0.1.0",
    description="User-aware perception and personalized VLM dialogue for the Pepper robot (ROS 2)",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["uservlm_ros", "uservlm_ros.*"]),
    # the console's page (plain HTML/JS/CSS, no build step)
    package_data={"uservlm_ros": ["py.typed"], "uservlm_ros.console": ["static/*"]},
    install_requires=["numpy", "pyyaml"],
    entry_points={"console_scripts": ["uservlm=uservlm_ros.cli:main", *NODE_SCRIPTS]},
)
