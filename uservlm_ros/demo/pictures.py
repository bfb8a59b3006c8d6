"""The README's pictures (docs/images/) from a demo run: the annotated frame and the latency chart.

    python -m uservlm_ros.demo.pictures                       # runs `uservlm demo` first
    python -m uservlm_ros.demo.pictures --from demo_output/<date-time>

Copies the run's frame with both people and its latency chart to docs/images/demo_frame.png and
docs/images/demo_latency.png at their native size, each kept under MAX_BYTES (a picture too
large for that is stored with a 256-colour palette, which leaves the plates' flat colours exact).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

MAX_BYTES = 300_000
DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
PICTURES = {"frame_2_faces.png": "demo_frame.png", "latency.png": "demo_latency.png"}


def save_small_png(source: Path, target: Path, max_bytes: int = MAX_BYTES) -> int:
    """source re-encoded as a PNG of at most max_bytes at the same size; returns its size."""
    from PIL import Image

    with Image.open(source) as opened:
        image = opened.convert("RGB")
    image.save(target, optimize=True)
    if target.stat().st_size > max_bytes:
        # No dithering: dithered plates would speckle their text.
        image.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
            target, optimize=True
        )
    size = target.stat().st_size
    if size > max_bytes:
        raise ValueError(f"{source.name} is {size} bytes even with a palette (limit {max_bytes})")
    return size


def copy_pictures(run: Path, out: Path = DOCS_IMAGES) -> list[Path]:
    """The demo run's pictures into out; raises FileNotFoundError naming a missing one."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, target in PICTURES.items():
        source = run / name
        if not source.exists():
            raise FileNotFoundError(f"{source} is missing: did the demo see both people?")
        save_small_png(source, out / target)
        written.append(out / target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m uservlm_ros.demo.pictures")
    parser.add_argument("--from", dest="run", type=Path, help="a demo_output/<date-time> folder")
    parser.add_argument("--out", type=Path, default=DOCS_IMAGES)
    args = parser.parse_args(argv)
    try:
        if args.run is None:
            from uservlm_ros.demo.run import run_demo

            with tempfile.TemporaryDirectory() as folder:
                if run_demo(Path(folder)) != 0:
                    print("error: the demo did not answer every question", file=sys.stderr)
                    return 1
                (run,) = Path(folder).iterdir()
                paths = copy_pictures(run, args.out)
        else:
            paths = copy_pictures(args.run, args.out)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}; pictures not updated", file=sys.stderr)
        return 1
    for path in paths:
        print(f"{path} ({path.stat().st_size // 1000} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
