"""Score one model on a labelled set at full resolution: the paper's four metrics and per-class IU, in MLflow.

Locally (a local Ray; MLflow from MLFLOW_TRACKING_URI or the per-user default store):

    python jobs/evaluate.py --model models:/fcn-synthetic@candidate --data data/synthetic
    python jobs/evaluate.py --model checkpoints/fcn8s.pt --data data/synthetic --no-tracking --output outputs/eval

On a Ray cluster, against S3 and a remote MLflow server:

    ray job submit --address http://HEAD:8265 --working-dir . \\
        --runtime-env-json '{"env_vars": {"MLFLOW_TRACKING_URI": "http://mlflow:5000"}}' -- \\
        python jobs/evaluate.py --model models:/fcn8s@champion --data s3://corpora/voc/ --split val

The run (experiment ``evaluation`` unless --experiment) holds the metrics, iu_<class>,
images_per_second and parameters, a confusion-matrix plot and the per-class IU as JSON. The
metrics table is printed too.
"""
from __future__ import annotations

import argparse
import sys

from pipelines.evaluation.config import EvaluationConfig
from pipelines.runtime.cli_options import add_options, config_from_args
from pipelines.runtime.job_runner import run_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="evaluate.py", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model", required=True,
                        help="models:/NAME@ALIAS, models:/NAME/VERSION, runs:/RUN_ID/PATH, or a checkpoint path/URI")
    add_options(parser, EvaluationConfig)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def job() -> None:
        config = config_from_args(EvaluationConfig, args)

        from pipelines.evaluation.checks import check_evaluation_inputs

        listing = check_evaluation_inputs(config, [args.model])  # a typo fails here, in a second or two

        from pipelines.evaluation.evaluate import evaluate_reference  # torch, MLflow: once the inputs are good
        from pipelines.evaluation.report import comparison_markdown

        evaluation = evaluate_reference(args.model, config, listing=listing)
        print(comparison_markdown([evaluation]))
        if evaluation.run_id:
            print(f"MLflow run: {evaluation.run_id} (experiment {config.experiment})")
        if config.output:
            print(f"files:      {config.output}")

    return run_cli(job)


if __name__ == "__main__":
    sys.exit(main())
