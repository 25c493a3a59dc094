"""Segment every image under a prefix (or in a manifest): one mask PNG per image, statistics in Parquet.

Locally (a local Ray, a folder as the bucket, MLflow in ./mlruns.db):

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

from pipelines.runtime.job_runner import connect_ray, run_cli
from pipelines.segmentation.config import SegmentConfig


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segment_bucket.py", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--input", required=True,
                        help="images to segment: a prefix (local folder, file://, s3://, any fsspec URI) "
                             "or a Parquet manifest written by the corpus layer")
    parser.add_argument("--output", required=True, help="output prefix for masks/, stats/ and summary.json")
    parser.add_argument("--model", required=True,
                        help="models:/NAME@ALIAS, models:/NAME/VERSION, runs:/RUN_ID/PATH, or a checkpoint path/URI")
    parser.add_argument("--batch-size", type=int, default=8, help="images per inference batch")
    parser.add_argument("--num-actors", type=int, default=None,
                        help="maximum size of the inference actor pool (default: one per GPU, "
                             "or as many as the CPUs allow)")
    parser.add_argument("--cpus-per-actor", type=float, default=None,
                        help="logical CPUs (= torch threads, rounded up) per inference actor (default: 1 with "
                             "GPUs, else up to 4)")
    parser.add_argument("--gpus-per-actor", type=float, default=None,
                        help="GPUs per inference actor (default: 1 if the cluster has GPUs, else 0)")
    parser.add_argument("--max-side", type=int, default=1024,
                        help="longest image side seen by the model (0 = full size); masks are always written "
                             "at the original size")
    parser.add_argument("--max-pixels", type=int, default=SegmentConfig.max_pixels,
                        help="images with more pixels are refused as decompression bombs (an error row)")
    parser.add_argument("--limit", type=int, default=None, help="segment at most this many listed images")
    parser.add_argument("--include", action="append", default=[], metavar="GLOB",
                        help="only keys matching this glob (repeatable)")
    parser.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                        help="skip keys matching this glob (repeatable)")
    parser.add_argument("--overwrite", action="store_true",
                        help="delete this output's masks, stats and summary first and redo every image")
    parser.add_argument("--incremental", action="store_true",
                        help="treat an object as done only if its etag is unchanged (changed objects are redone)")
    parser.add_argument("--reprocess-on-model-change", action="store_true",
                        help="redo images that were segmented by a different model version")
    parser.add_argument("--max-error-fraction", type=float, default=0.1,
                        help="exit non-zero (and write no summary.json) if more images than this fail")
    parser.add_argument("--stats-partition", default=None, metavar="NAME=VALUE",
                        help="record this run's statistics in partition NAME=VALUE of the table (e.g. "
                             "date=2026-11-21); an output keeps the partitioning of its first run")
    parser.add_argument("--commit-rows", type=int, default=SegmentConfig.commit_rows,
                        help="commit statistics every this many images (what a crash can cost at most)")
    parser.add_argument("--commit-seconds", type=float, default=SegmentConfig.commit_seconds,
                        help="and at least this often while images finish")
    parser.add_argument("--experiment", default="segment_bucket", help="MLflow experiment name")
    parser.add_argument("--no-tracking", action="store_true",
                        help="do not log to MLflow (otherwise an unreachable MLflow server stops the job "
                             "before any work)")
    return parser


def config_from_args(args: argparse.Namespace) -> SegmentConfig:
    return SegmentConfig(
        input=args.input, output=args.output, model=args.model, batch_size=args.batch_size,
        num_actors=args.num_actors, cpus_per_actor=args.cpus_per_actor, gpus_per_actor=args.gpus_per_actor,
        max_side=args.max_side or None, max_pixels=args.max_pixels, limit=args.limit, include=args.include,
        exclude=args.exclude, overwrite=args.overwrite, incremental=args.incremental,
        reprocess_on_model_change=args.reprocess_on_model_change, max_error_fraction=args.max_error_fraction,
        stats_partition=args.stats_partition, commit_rows=args.commit_rows, commit_seconds=args.commit_seconds,
        experiment=args.experiment, tracking=not args.no_tracking,
    )


def main(argv: list[str] | None = None) -> int:
    from pipelines.segmentation.run import check_inputs, run_segmentation

    args = build_parser().parse_args(argv)

    def job() -> None:
        config = config_from_args(args)
        checked = check_inputs(config)  # a wrong input, model or output fails here, before Ray starts
        connect_ray()
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
