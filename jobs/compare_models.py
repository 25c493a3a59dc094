"""Compare several models on one labelled set in one Ray job; optionally promote the best to champion.

Locally (a local Ray; MLflow from MLFLOW_TRACKING_URI or the per-user default store):

    python jobs/compare_models.py --models models:/fcn-synthetic/1 models:/fcn-synthetic@candidate \\
        --data data/synthetic --promote

On a Ray cluster, against S3 and a remote MLflow server:

    ray job submit --address http://HEAD:8265 --working-dir . \\
        --runtime-env-json '{"env_vars": {"MLFLOW_TRACKING_URI": "http://mlflow:5000"}}' -- \\
        python jobs/compare_models.py --models models:/fcn8s@champion models:/fcn8s@candidate \\
        --data s3://corpora/voc/ --promote --output s3://reports/fcn8s/2026-11-21

Each model gets its own evaluation run (as jobs/evaluate.py makes); a ``compare_models`` run, their
parent in the MLflow UI, holds comparison.md, comparison.csv, per_class_iu.png and
mean_iu_vs_images_per_second.png (--output writes them there too, each model's own files under
evaluations/<reference>/). The Markdown table is printed. With --promote, all models must be
versions of one registered model; models:/NAME@champion moves to the best by mean IU only if it
beats the current champion on this same data (no champion yet: the best becomes champion; a name's
first registered version is its champion from the start).
"""
from __future__ import annotations

import argparse
import sys

from pipelines.evaluation.config import EvaluationConfig
from pipelines.runtime.cli_options import add_options, config_from_args
from pipelines.runtime.job_runner import run_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="compare_models.py", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--models", required=True, nargs="+", metavar="REF",
                        help="models to compare: models:/NAME@ALIAS, models:/NAME/VERSION, runs:/RUN_ID/PATH, "
                             "or checkpoint paths/URIs")
    parser.add_argument("--promote", action="store_true",
                        help="move models:/NAME@champion to the best model by mean IU if it beats the current "
                             "champion (registered models of one NAME only)")
    parser.add_argument("--allow-different-data", action="store_true",
                        help="compare (and promote) even if the held-out pairs changed between the models' "
                             "evaluations (each run records the digest of what it scored)")
    add_options(parser, EvaluationConfig)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def job() -> None:
        evaluation = config_from_args(EvaluationConfig, args)

        from pipelines.evaluation.checks import check_evaluation_inputs

        listing = check_evaluation_inputs(evaluation, args.models)  # a typo fails here, in a second or two

        from pipelines.evaluation.compare import CompareConfig, compare_models  # torch, MLflow: once inputs are good

        config = CompareConfig(models=tuple(args.models), evaluation=evaluation, promote=args.promote,
                               allow_different_data=args.allow_different_data)
        result = compare_models(config, listing=listing)
        print(result.markdown)
        if result.decision is not None:
            print(result.decision.message)
        if result.run_id:
            print(f"MLflow comparison run: {result.run_id} (experiment {config.evaluation.experiment})")
        if result.written:
            print(f"files:      {config.evaluation.output}")

    return run_cli(job)


if __name__ == "__main__":
    sys.exit(main())
