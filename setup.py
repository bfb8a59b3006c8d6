"""pip installation of the uservlm_ros Python package (colcon builds use CMakeLists.txt)."""

import shutil
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).parent
# One console script per node file, so `ros2 run uservlm <x>_node` (colcon) and
# `uservlm-<x>-node` (pip) start the same code; likewise the container of several nodes
# (`uservlm-container`, `ros2 run uservlm container`).
NODE_SCRIPTS = [
    f"uservlm-{path.stem.replace('_', '-')}=uservlm_ros.nodes.{path.stem}:main"
    for path in sorted((HERE / "uservlm_ros" / "nodes").glob("*_node.py"))
] + ["uservlm-container=uservlm_ros.nodes.container:main"]

# Files the package reads at run time (deployments, the Fast DDS profile, the .msg definitions
# for bags). config/ and msg/ stay the one source of truth; a pip build copies them into
# uservlm_ros/share/ (uservlm_ros.core.shipped finds them there), colcon installs them to
# share/uservlm/ (CMakeLists.txt).
SHIPPED = {"config": ("**/*.yaml", "*.xml", "*.jinja"), "msg": ("*.msg",)}


class BuildWithSharedFiles(build_py):
    def run(self):
        super().run()
        if self.editable_mode:  # an editable install reads config/ and msg/ in place
            return
        for folder, patterns in SHIPPED.items():
            for pattern in patterns:
                for source in sorted((HERE / folder).glob(pattern)):
                    target = Path(self.build_lib, "uservlm_ros", "share", folder)
                    target = target / source.relative_to(HERE / folder)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(source, target)


setup(
    name="uservlm-ros",
    version="0.1.0",
    description="User-aware perception and personalized VLM dialogue for the Pepper robot (ROS 2)",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["uservlm_ros", "uservlm_ros.*"]),
    # The simulated Pepper's speech clips (the demo speaks them into its microphones) and the
    # console's page (plain HTML/JS/CSS, no build step).
    package_data={
        "uservlm_ros": ["py.typed", "sim/speech/*.wav", "sim/speech/*.tsv"],
        "uservlm_ros.console": ["static/*"],
    },
    install_requires=["numpy", "pyyaml"],
    cmdclass={"build_py": BuildWithSharedFiles},
    entry_points={"console_scripts": ["uservlm=uservlm_ros.cli:main", *NODE_SCRIPTS]},
)
