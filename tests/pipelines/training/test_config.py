"""TrainConfig: every bad flag value is a one-line ConfigError naming the flag; round trips are exact."""
import pytest

from pipelines.errors import ConfigError
from pipelines.training.config import TrainConfig


def test_defaults_are_valid_and_round_trip_through_plain_dicts():
    config = TrainConfig(data="s3://bucket/voc/", name="run-1")
    values = config.to_dict()
    assert values["scale_range"] == list(config.scale_range)
    assert TrainConfig.from_dict(values) == config
    assert config.global_batch_size == config.batch_size * config.num_workers


@pytest.mark.parametrize(
    ("changes", "flag"),
    [
        ({"variant": "fcn4s"}, "--variant"),
        ({"optimizer": "adam"}, "--optimizer"),
        ({"lr_schedule": "step"}, "--lr-schedule"),
        ({"alignment": "loose"}, "--alignment"),
        ({"epochs": 0}, "--epochs"),
        ({"batch_size": 0}, "--batch-size"),
        ({"num_workers": 0}, "--num-workers"),
        ({"val_every": 0}, "--val-every"),
        ({"lr": 0.0}, "--lr"),
        ({"crop_size": 8}, "--crop-size"),
        ({"scale_range": (1.5, 0.5)}, "--scale-range"),
        ({"dropout": 1.0}, "--dropout"),
        ({"cpus_per_worker": 0}, "--cpus-per-worker"),
        ({"backbone": "resnet50", "width_multiplier": 0.5}, "--width-multiplier"),
        ({"name": "a/b"}, "--name"),
    ],
)
def test_bad_values_name_their_flag(changes, flag):
    with pytest.raises(ConfigError, match=flag):
        TrainConfig(data="data", **changes)


def test_model_options_leave_width_out_for_resnet():
    assert "width_multiplier" not in TrainConfig(data="d", backbone="resnet50", width_multiplier=1.0).model_options()
    options = TrainConfig(data="d", width_multiplier=0.125, alignment="compact").model_options()
    assert options["width_multiplier"] == 0.125 and options["alignment"] == "compact"


def test_from_dict_refuses_unknown_settings():
    values = TrainConfig(data="d", name="n").to_dict() | {"warp_speed": 9}
    with pytest.raises(ConfigError, match="warp_speed"):
        TrainConfig.from_dict(values)
