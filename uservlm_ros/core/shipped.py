"""Where the files shipped beside the code are: config/*.yaml, config/fastdds.xml, msg/*.msg.

One source of truth, the repository's config/ and msg/. A source checkout reads them in place;
a pip install carries a copy in uservlm_ros/share/ (setup.py copies them at build time); a
colcon install has them in <prefix>/share/uservlm/ (CMakeLists.txt).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

PACKAGE = "uservlm"
PACKAGE_SHARE = Path(__file__).resolve().parents[1] / "share"
_SOURCE_ROOT = Path(__file__).resolve().parents[2]


def shipped_dirs(kind: str) -> list[Path]:
    """The existing folders holding `kind` ("config" or "msg"), the first one to prefer."""
    candidates = []
    # Only a checkout has package.xml beside the package: an install's parents are unrelated.
    if (_SOURCE_ROOT / "package.xml").is_file():
        candidates.append(_SOURCE_ROOT / kind)
    candidates.append(PACKAGE_SHARE / kind)
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    candidates += [Path(p) / "share" / PACKAGE / kind for p in [*prefixes, sys.prefix]]
    found: list[Path] = []
    for candidate in candidates:
        if candidate.is_dir() and candidate not in found:
            found.append(candidate)
    return found


def shipped_file(kind: str, name: str) -> Path | None:
    """The first shipped `kind`/`name` that exists, or None."""
    for folder in shipped_dirs(kind):
        if (folder / name).is_file():
            return folder / name
    return None
