"""Score one model on a labelled set at full resolution: the paper's four metrics and per-class IU, in MLflow.

Locally (a local Ray; MLflow from MLFLOW_TRACKING_URI or ./mlruns.db):

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

from pipelines.evaluation.config import DEFAULT_EXPERIMENT, EvaluationConfig
from pipelines.io.labelled import LAYOUTS
from pipelines.runtime.job_runner import connect_ray, run_cli


def add_evaluation_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags every evaluation job shares: data, model-stage resources, tracking, output."""
    parser.add_argument("--data", required=True,
                        help="labelled set: local folder or URI (s3://bucket/voc/) in voc or paired layout, "
                             "or a .parquet manifest of image_uri, mask_uri")
    parser.add_argument("--layout", choices=LAYOUTS, default="auto",
                        help="voc (ImageSets/JPEGImages/SegmentationClass), paired (images/, masks/) or manifest; "
                             "auto tells them apart")
    parser.add_argument("--split", default="val", help="split to evaluate")
    parser.add_argument("--batch-size", type=int, default=8,
                        help="images per model-stage batch (same-sized images share a forward pass, no padding)")
    parser.add_argument("--num-actors", type=int, default=None,
                        help="fixed size of the model actor pool (default: up to one per GPU, or as many as "
                             "the CPUs allow)")
    parser.add_argument("--cpus-per-actor", type=float, default=None,
                        help="logical CPUs (= torch threads, rounded up) per model actor (default: 1 with GPUs, "
                             "else up to 4)")
    parser.add_argument("--gpus-per-actor", type=float, default=None,
                        help="GPUs per model actor (default: 1 if the cluster has GPUs, else 0)")
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N pairs of the split")
    parser.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help="MLflow experiment name")
    parser.add_argument("--no-tracking", action="store_true",
                        help="do not log to MLflow (otherwise an unreachable MLflow server stops the job "
                             "before any work)")
    parser.add_argument("--output", default=None, metavar="DIR",
                        help="also write the result files to this folder or URI (e.g. s3://bucket/evaluations/x)")


def evaluation_config_from_args(args: argparse.Namespace) -> EvaluationConfig:
    return EvaluationConfig(data=args.data, layout=args.layout, split=args.split, batch_size=args.batch_size,
                            num_actors=args.num_actors, cpus_per_actor=args.cpus_per_actor,
                            gpus_per_actor=args.gpus_per_actor, limit=args.limit, experiment=args.experiment,
                            tracking=not args.no_tracking, output=args.output)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="evaluate.py", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model", required=True,
                        help="models:/NAME@ALIAS, models:/NAME/VERSION, runs:/RUN_ID/PATH, or a checkpoint path/URI")
    add_evaluation_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    from pipelines.evaluation.evaluate import evaluate_reference
    from pipelines.evaluation.report import comparison_markdown

    args = build_parser().parse_args(argv)

    def job() -> None:
        config = evaluation_config_from_args(args)
        connect_ray()
        evaluation = evaluate_reference(args.model, config)
        print(comparison_markdown([evaluation]))
        if evaluation.run_id:
            print(f"MLflow run: {evaluation.run_id} (experiment {config.experiment})")
        if config.output:
            print(f"files:      {config.output}")

    return run_cli(job)


if __name__ == "__main__":
    sys.exit(main())
