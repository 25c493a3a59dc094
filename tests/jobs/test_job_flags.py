"""The jobs' flags are read off their config dataclasses: every field is a flag of every job that takes it,
with its help and default, and model choices come from the model registry."""
import dataclasses
import subprocess
import sys

import pytest

from jobs import compare_models, evaluate, nightly_label, segment_bucket, train_fcn
from pipelines.errors import ConfigError
from pipelines.evaluation.config import EvaluationConfig
from pipelines.runtime.cli_options import cli_option, config_from_args, flag_of
from pipelines.segmentation.config import SegmentConfig
from pipelines.training.config import TrainConfig

# The flags each job had before its parser was read off its config: none may go away or be renamed.
SEGMENT_FLAGS = [
    "--input", "--output", "--model", "--batch-size", "--num-actors", "--cpus-per-actor", "--gpus-per-actor",
    "--max-side", "--max-pixels", "--limit", "--include", "--exclude", "--overwrite", "--incremental",
    "--reprocess-on-model-change", "--max-error-fraction", "--stats-partition", "--commit-rows", "--commit-seconds",
    "--experiment", "--no-tracking",
]
NIGHTLY_FLAGS = [
    "--input", "--output", "--model-name", "--model", "--date", "--review-threshold", "--novelty-threshold",
    "--reprocess-on-model-change", "--batch-size", "--num-actors", "--gpus-per-actor", "--max-side",
    "--max-error-fraction", "--experiment", "--no-tracking",
]
TRAIN_FLAGS = [
    "--data", "--layout", "--train-split", "--val-split", "--mix-in", "--mix-repeat", "--class-names", "--variant",
    "--backbone", "--backbone-weights", "--width-multiplier", "--alignment", "--dropout", "--init-from",
    "--num-workers", "--use-gpu", "--no-use-gpu", "--cpus-per-worker", "--epochs", "--batch-size", "--crop-size",
    "--scale-range", "--optimizer", "--lr", "--momentum", "--weight-decay", "--lr-schedule", "--amp", "--val-every",
    "--seed", "--name", "--storage-path", "--resume", "--keep-checkpoints", "--max-failures", "--experiment",
    "--no-tracking", "--register-as",
]

EVALUATION_FLAGS = [
    "--data", "--layout", "--split", "--batch-size", "--num-actors", "--cpus-per-actor", "--gpus-per-actor",
    "--limit", "--experiment", "--no-tracking", "--output",
]


def _flags(parser) -> set[str]:
    return {flag for action in parser._actions for flag in action.option_strings}


def _option_fields(config_class):
    return [field for field in dataclasses.fields(config_class) if cli_option(field) is not None]


@pytest.mark.parametrize(("job", "flags"), [
    (segment_bucket, SEGMENT_FLAGS),
    (nightly_label, NIGHTLY_FLAGS),
    (train_fcn, TRAIN_FLAGS),
    (evaluate, ["--model", *EVALUATION_FLAGS]),
    (compare_models, ["--models", "--promote", "--allow-different-data", *EVALUATION_FLAGS]),
], ids=["segment_bucket", "nightly_label", "train_fcn", "evaluate", "compare_models"])
def test_every_earlier_flag_is_still_there_and_every_flag_is_explained(job, flags):
    parser = job.build_parser()
    assert set(flags) <= _flags(parser)
    assert all(action.help for action in parser._actions)


def test_a_segmentation_field_is_a_flag_of_both_segmentation_jobs():
    """What makes a new segmentation flag one edit: a SegmentConfig `option` field reaches both parsers."""
    segment, nightly = _flags(segment_bucket.build_parser()), _flags(nightly_label.build_parser())
    for field in _option_fields(SegmentConfig):
        assert flag_of(field) in segment
        if field.name not in nightly_label._FIXED_BY_THIS_JOB:
            assert flag_of(field) in nightly, field.name


def test_defaults_are_the_configs():
    args = segment_bucket.build_parser().parse_args(["--input", "i", "--output", "o", "--model", "m"])
    assert config_from_args(SegmentConfig, args) == SegmentConfig(input="i", output="o", model="m")
    args = segment_bucket.build_parser().parse_args(
        ["--input", "i", "--output", "o", "--model", "m", "--max-side", "0", "--no-tracking", "--include", "*.jpg"])
    config = config_from_args(SegmentConfig, args)
    assert (config.max_side, config.tracking, config.include) == (None, False, ["*.jpg"])

    args = nightly_label.build_parser().parse_args(["--input", "i", "--output", "o", "--model-name", "fcn8s",
                                                    "--date", "2026-11-21"])
    config, date = nightly_label.nightly_config_from_args(args)
    assert config == SegmentConfig(input="i", output="o", model="models:/fcn8s@champion", incremental=True,
                                   stats_partition="date=2026-11-21", experiment="nightly_label")
    assert date == "2026-11-21"

    args = train_fcn.build_parser().parse_args(["--data", "d", "--name", "n"])
    assert config_from_args(TrainConfig, args) == TrainConfig(data="d", name="n")

    for job, model in ((evaluate, "--model"), (compare_models, "--models")):
        args = job.build_parser().parse_args([model, "m", "--data", "d"])
        assert config_from_args(EvaluationConfig, args) == EvaluationConfig(data="d")


def test_model_choices_come_from_the_registry():
    from fcn_core.models import list_backbones, list_models

    parser = train_fcn.build_parser()
    choices = {action.dest: list(action.choices) for action in parser._actions if action.choices is not None}
    assert choices["backbone"] == list_backbones() and "mobilenet_v3_large" in choices["backbone"]
    assert choices["variant"] == list_models()
    args = parser.parse_args(["--data", "d", "--name", "n", "--backbone", "mobilenet_v3_large",
                              "--width-multiplier", "1"])
    assert config_from_args(TrainConfig, args).model_options()["backbone"] == "mobilenet_v3_large"
    with pytest.raises(ConfigError, match="--width-multiplier applies to vgg16 only"):
        TrainConfig(data="d", backbone="mobilenet_v3_large")  # the default width is VGG16's 1/8


@pytest.mark.parametrize("job", ["train_fcn", "segment_bucket"])
def test_building_a_parser_imports_neither_torch_ray_nor_mlflow(job):
    script = (f"import sys; from jobs import {job}; {job}.build_parser(); "
              "print(sorted({'torch', 'ray', 'mlflow'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
