"""What does a nightly rerun over an unchanged bucket cost, next to the first run?

Segments a 1,000-image synthetic corpus with ``--incremental``, then runs the same command again
(nothing changed: the ledger says every object is done), then adds 10 images and runs once more.
Prints the three wall times and the ratio unchanged/first (goal <= 5%).

    python -m benchmarks.incremental
    python -m benchmarks.incremental --images 200      # a quicker look
    python -m benchmarks.incremental --tiny            # 8 images of 64 x 64: what the test suite runs
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from benchmarks import tiny
from benchmarks.common import corpus_and_checkpoint, local_ray, segment

NEW_IMAGES = 10


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--width", type=float, default=0.125)
    args = tiny.parse_args(parser, argv, images=8, size=64, width=1 / 16)

    with local_ray(in_use=True), tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        images_dir, checkpoint = corpus_and_checkpoint(root, images=args.images, size=args.size, width=args.width)
        output = root / "labels"
        first, first_s = segment(images_dir, checkpoint, output, incremental=True)
        unchanged, unchanged_s = segment(images_dir, checkpoint, output, incremental=True)
        extra, _ = corpus_and_checkpoint(root / "extra", images=NEW_IMAGES, size=args.size, width=args.width)
        for path in sorted(extra.glob("*.jpg")):
            shutil.copy(path, images_dir / f"new-{path.name}")
        grown, grown_s = segment(images_dir, checkpoint, output, incremental=True)

    print(f"first run:      {first['processed_this_run']:5d} images in {first_s:7.2f} s")
    print(f"unchanged rerun:{unchanged['processed_this_run']:5d} images in {unchanged_s:7.2f} s")
    print(f"{NEW_IMAGES} new images:  {grown['processed_this_run']:5d} images in {grown_s:7.2f} s")
    print(f"unchanged / first = {unchanged_s / first_s:.3f}   (goal <= 0.05)")


if __name__ == "__main__":
    main()
