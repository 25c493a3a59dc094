"""Segment every image under a prefix (or in a manifest): one mask PNG per image, statistics in Parquet.

Locally (a local Ray, a folder as the bucket, MLflow in the per-user default store):

    python jobs/segment_bucket.py --input data/images --output outputs/run1 --model checkpoints/fcn8s.pt

On a Ray cluster, against S3 and a remote MLflow server (token authentication on):

    export RAY_AUTH_MODE=token MLFLOW_TRACKING_URI=http://mlflow:5000
    ray job submit --address http://HEAD:8265 --working-dir . -- \\
        python jobs/segment_bucket.py --input s3://bucket/images/ --output s3://bucket/masks/run1 \\
        --model models:/fcn8s@champion

Re-running the same command skips the images already done; ``summary.json`` in the output appears
only once every image has a row and the error fraction is within ``--max-error-fraction``.
"""
from __future__ import annotations

import argparse
import sys

from pipelines.runtime.cli_options import add_options, config_from_args
from pipelines.runtime.job_runner import run_cli
from pipelines.segmentation.config import SegmentConfig


def build_parser() -> argparse.ArgumentParser:
    """Every flag is a `SegmentConfig` field: its help text and default are written there."""
    parser = argparse.ArgumentParser(
        prog="segment_bucket.py", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_options(parser, SegmentConfig)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def job() -> None:
        config = config_from_args(SegmentConfig, args)

        from pipelines.segmentation.checks import check_inputs

        checked = check_inputs(config)  # a wrong input, model or output fails here, in a second or two

        from pipelines.segmentation.run import run_segmentation  # starts Ray only if there is work

        result = run_segmentation(config, checked)
        summary = result.summary
        print(f"segmented {summary.processed_this_run} images this run "
              f"({summary.ok} ok, {summary.error} errors in the output)")
        print(f"masks:      {config.output.rstrip('/')}/masks/")
        print(f"statistics: {config.output.rstrip('/')}/stats/ (a Delta table)")
        print(f"summary:    {result.summary_uri}")
        if result.run_id:
            print(f"MLflow run: {result.run_id}")

    return run_cli(job)


if __name__ == "__main__":
    sys.exit(main())
