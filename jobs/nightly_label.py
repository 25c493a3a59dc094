"""Nightly incremental labelling: segment what is new in a bucket with the registry's champion model.

Each night it lists the bucket, skips every object already in the output's ledger with the same
etag (so only new or changed images cost anything), records that night's statistics in partition
``date=YYYY-MM-DD`` of the output's statistics table and writes a review list of the images people
should check first, the most doubtful first: those the model labelled with low confidence and those
unlike its training images (``review/date=YYYY-MM-DD.csv`` and ``review/date=YYYY-MM-DD/index.html``).

Locally:

    python jobs/nightly_label.py --input data/images --output outputs/nightly --model-name fcn8s

On a cluster (what the KubeRay schedule in infra/k8s runs):

    RAY_AUTH_MODE=token ray job submit --address http://HEAD:8265 --working-dir . -- \\
        python jobs/nightly_label.py --input s3://bucket/images/ --output s3://bucket/labels/ --model-name fcn8s
"""
from __future__ import annotations

import argparse
import datetime
import sys

from pipelines.errors import ConfigError
from pipelines.labelling.review_rule import ReviewRule
from pipelines.runtime.cli_options import add_options, config_from_args
from pipelines.runtime.job_runner import run_cli
from pipelines.segmentation.config import SegmentConfig

# SegmentConfig's flags this job sets itself: the model comes from --model-name or --model, every night is
# incremental into its own date partition, and --overwrite would delete every earlier night's labels.
_FIXED_BY_THIS_JOB = ("model", "incremental", "stats_partition", "overwrite")


def build_parser() -> argparse.ArgumentParser:
    """The flags of the night (model, date, review rule), then every other `SegmentConfig` flag."""
    parser = argparse.ArgumentParser(prog="nightly_label.py", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--model-name", help="registered model whose @champion alias labels the images")
    model.add_argument("--model", help="any model reference instead (models:/..., runs:/..., checkpoint path)")
    parser.add_argument("--date", default=None, help="partition date YYYY-MM-DD (default: today, UTC)")
    parser.add_argument("--review-threshold", type=float, default=ReviewRule.confidence_below,
                        help="images whose mean confidence is below this go on the review list")
    parser.add_argument("--novelty-threshold", type=float, default=ReviewRule.novelty_above,
                        help="images whose novelty is above this go on the review list too: how unlike the "
                             "training images an image is, 1 = as unusual as the 1%% most unusual of them")
    add_options(parser, SegmentConfig, exclude=_FIXED_BY_THIS_JOB, defaults={"experiment": "nightly_label"})
    return parser


def nightly_config_from_args(args: argparse.Namespace) -> tuple[SegmentConfig, str]:
    """The night's SegmentConfig and its partition date."""
    date = args.date or datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    try:
        datetime.date.fromisoformat(date)
    except ValueError:
        raise ConfigError(f"--date must look like 2026-11-21, got {date!r}") from None
    config = config_from_args(
        SegmentConfig, args, model=args.model or f"models:/{args.model_name}@champion", incremental=True,
        stats_partition=f"date={date}",
    )
    return config, date


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def job() -> None:
        config, date = nightly_config_from_args(args)

        from pipelines.segmentation.checks import check_inputs

        checked = check_inputs(config)  # a wrong input, model or output fails here, in a second or two

        from pipelines.labelling.review import log_review_page, write_review_list
        from pipelines.segmentation.run import run_segmentation  # starts Ray only if there is something new

        result = run_segmentation(config, checked)
        rule = ReviewRule(confidence_below=args.review_threshold, novelty_above=args.novelty_threshold)
        review = write_review_list(config.output, date, rule=rule)
        if result.run_id:
            log_review_page(result.run_id, review.files, date)
        summary = result.summary
        print(f"{date}: labelled {summary.processed_this_run} new or changed images "
              f"({summary.errors_this_run} errors); {summary.images} in the ledger")
        print(f"review list ({review.images} images below confidence {rule.confidence_below:g} or above novelty "
              f"{rule.novelty_above:g}): {review.csv_uri}")
        print(f"review page: {review.page_uri}")
        print(f"statistics: {config.output.rstrip('/')}/stats/ (a Delta table), partition date={date}")
        if result.run_id:
            print(f"MLflow run: {result.run_id}")

    return run_cli(job)


if __name__ == "__main__":
    sys.exit(main())
