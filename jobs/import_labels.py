"""Import the masks labellers corrected as a labelled set that train_fcn.py and evaluate.py read.

    python jobs/import_labels.py --output outputs/nightly --from corrected.zip --to data/corrected
    python jobs/import_labels.py --output s3://bucket/labels/ --format coco --from coco.json --to s3://bucket/corrected/
    ray job submit --address http://HEAD:8265 --working-dir . -- python jobs/import_labels.py \\
        --output s3://bucket/labels/ --format label-studio --from s3://bucket/exports/ls-export.json \\
        --to s3://bucket/corrected/

--from is what the labelling tool exported after people corrected an export of --output (made with
export_labels.py): voc: CVAT's Export task dataset -> "Segmentation mask 1.1"; coco: "COCO 1.0" or
the COCO JSON itself; label-studio: Export -> "JSON". Each mask is mapped back to its image through
--output's statistics, and written under --to as DEST/masks/*.png, DEST/labelmap.txt and
DEST/manifest.parquet, which points at the original images (nothing is copied). Imports into one
--to merge, the later one winning per image; importing the same export again changes nothing. A
mask of an image --output does not hold, of another size than its image or with a class its
labelmap.txt does not name stops the import before anything is written, with one line (exit 2).
"""
from __future__ import annotations

import argparse
import sys

from pipelines.runtime.job_runner import run_cli


def build_parser() -> argparse.ArgumentParser:
    from pipelines.labelling.formats import import_format, import_formats

    parser = argparse.ArgumentParser(prog="import_labels.py", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--output", required=True,
                        help="the output of segment_bucket.py / nightly_label.py that the export was made from")
    parser.add_argument("--from", dest="source", required=True, metavar="EXPORT",
                        help="the file the labelling tool exported with the corrections (any URI)")
    parser.add_argument("--format", default="voc", choices=import_formats(),
                        help="; ".join(f"{name}: {import_format(name).exported_by}" for name in import_formats()))
    parser.add_argument("--to", required=True, metavar="DEST",
                        help="the labelled set to write or add to (a folder or prefix, any URI)")
    parser.add_argument("--date", default=None,
                        help="the night the export was made of (export_labels.py --date YYYY-MM-DD): only that "
                             "night's images are looked up, whatever the size of the output")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def job() -> None:
        from pipelines.labelling.labelled_set import import_corrections

        partition = f"date={args.date}" if args.date else None
        result = import_corrections(args.output, args.source, args.to, format=args.format, partition=partition)
        print(f"imported {result.imported} corrected masks from {args.source} ({args.format}); "
              f"the labelled set holds {result.images} images")
        print(f"manifest: {result.manifest_uri}")
        print(f"train on it: python jobs/train_fcn.py --data {result.manifest_uri}")

    return run_cli(job)


if __name__ == "__main__":
    sys.exit(main())
