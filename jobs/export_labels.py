"""Export a segmentation output's masks in a format a labelling tool imports, so people correct them.

    python jobs/export_labels.py --output outputs/nightly --to outputs/nightly/export/voc.zip
    python jobs/export_labels.py --output s3://bucket/labels/ --date 2026-11-21 --to s3://bucket/exports/2026-11-21.zip
    python jobs/export_labels.py --output s3://bucket/labels/ --date 2026-11-21 --format coco --to coco.json
    python jobs/export_labels.py --output s3://bucket/labels/ --date 2026-11-21 --format label-studio --to tasks.json
    python jobs/export_labels.py --output s3://bucket/labels/ --date 2026-11-21 --review-only --to review.zip

voc: in CVAT, open the task holding the same images, Actions -> Upload annotations -> "Segmentation mask 1.1".
coco: ``pycocotools.coco.COCO("coco.json")``, or in CVAT Actions -> Upload annotations -> "COCO 1.0".
label-studio: in a project whose labeling config has <Image name="image" value="$image"/> and
<BrushLabels name="tag" toName="image"> with a label per class, Import -> tasks.json; each task opens with
the model's regions as a prediction. (Images under s3:// need the bucket as the project's source storage.)
Each image is exported as its latest run left it; images that run could not segment are left out.
"""
from __future__ import annotations

import argparse
import sys

from pipelines.errors import ConfigError
from pipelines.runtime.job_runner import run_cli


def build_parser() -> argparse.ArgumentParser:
    from pipelines.labelling.formats import export_format, export_formats

    parser = argparse.ArgumentParser(prog="export_labels.py", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--output", required=True, help="the output prefix of segment_bucket.py / nightly_label.py")
    parser.add_argument("--to", required=True, help="where to write the export, one file (any URI)")
    parser.add_argument("--format", default="voc", choices=export_formats(),
                        help="; ".join(f"{name}: {export_format(name).imported_by}" for name in export_formats()))
    parser.add_argument("--date", default=None, help="only this night's partition (YYYY-MM-DD)")
    parser.add_argument("--review-only", action="store_true",
                        help="only the images on that night's review list (review/date=DATE.csv): the ones "
                             "people should correct first; needs --date")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def job() -> None:
        from pipelines.labelling.formats import export_masks

        if args.review_only and not args.date:
            raise ConfigError("--review-only exports one night's review list: pass its --date")
        partition = f"date={args.date}" if args.date else None
        only = None
        if args.review_only:
            from pipelines.labelling.review import read_review_list

            only = read_review_list(args.output, args.date)
        count = export_masks(args.output, args.to, format=args.format, partition=partition, only=only)
        print(f"exported {count} masks as {args.format} to {args.to}")

    return run_cli(job)


if __name__ == "__main__":
    sys.exit(main())
