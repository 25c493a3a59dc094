"""Export a segmentation output's masks as a PASCAL VOC segmentation zip that CVAT imports.

    python jobs/export_labels.py --output outputs/nightly --to outputs/nightly/export/voc.zip
    python jobs/export_labels.py --output s3://bucket/labels/ --date 2026-11-21 --to s3://bucket/exports/2026-11-21.zip

In CVAT: open the task holding the same images, Actions -> Upload annotations -> "Segmentation mask 1.1".
"""
from __future__ import annotations

import argparse
import sys

from pipelines.job_runner import run_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="export_labels.py", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--output", required=True, help="the output prefix of segment_bucket.py / nightly_label.py")
    parser.add_argument("--to", required=True, help="where to write the zip (any URI)")
    parser.add_argument("--date", default=None, help="only this night's partition (YYYY-MM-DD)")
    return parser


def main(argv: list[str] | None = None) -> int:
    from pipelines.segmentation.export import export_voc_segmentation

    args = build_parser().parse_args(argv)

    def job() -> None:
        partition = f"date={args.date}" if args.date else None
        count = export_voc_segmentation(args.output, args.to, partition=partition)
        print(f"exported {count} masks with labelmap.txt to {args.to}")

    return run_cli(job)


if __name__ == "__main__":
    sys.exit(main())
