"""Checkpoints: a round trip keeps weights and metadata, and every bad file is refused in one line."""
import io
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from fcn_core.checkpoint import (
    FORMAT_VERSION,
    load_checkpoint,
    read_checkpoint_metadata,
    save_checkpoint,
)
from fcn_core.models import build_model, list_backbones
from fcn_core.normalization import IMAGENET_NORMALIZATION
from pipelines.errors import CheckpointError

CLASSES = ["background", "disc", "square"]


@dataclass
class RunConfig:
    learning_rate: float = 1e-4
    model: str = "fcn8s"


@pytest.fixture
def trained_model():
    torch.manual_seed(0)
    model = build_model("fcn8s", 3, width_multiplier=1 / 32, alignment="compact")
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.01)
    return model


def _assert_one_line(error: pytest.ExceptionInfo) -> None:
    assert "\n" not in str(error.value) and str(error.value)


def _checkpoint_bytes(model, **kwargs) -> io.BytesIO:
    buffer = io.BytesIO()
    save_checkpoint(buffer, model, class_names=CLASSES, **kwargs)
    buffer.seek(0)
    return buffer


def test_round_trip_through_a_file_keeps_outputs_and_metadata(tmp_path, trained_model):
    optimizer = torch.optim.Adam(trained_model.parameters(), lr=0.1)
    trained_model(torch.randn(1, 3, 20, 20)).sum().backward()
    optimizer.step()
    path = tmp_path / "runs" / "best.pt"
    save_checkpoint(
        path,
        trained_model,
        class_names=CLASSES,
        step=120,
        metrics={"mean_iu": 0.42, "pixel_accuracy": np.float32(0.5)},
        config=RunConfig(),
        training_state={"optimizer": optimizer.state_dict(), "epoch": 3},
    )
    assert [p.name for p in path.parent.iterdir()] == ["best.pt"]  # no temporary file left behind

    loaded = load_checkpoint(path, expect_num_classes=3, expect_name="fcn8s")
    assert loaded.spec == trained_model.spec
    assert loaded.class_names == CLASSES
    assert loaded.normalization == IMAGENET_NORMALIZATION
    assert (loaded.step, loaded.metrics) == (120, {"mean_iu": 0.42, "pixel_accuracy": 0.5})
    assert loaded.config == {"learning_rate": 1e-4, "model": "fcn8s"}
    assert not loaded.model.training
    images = torch.randn(2, 3, 37, 29)
    with torch.inference_mode():
        torch.testing.assert_close(loaded.model(images), trained_model.eval()(images))
    resumed = torch.optim.Adam(loaded.model.parameters(), lr=0.1)
    resumed.load_state_dict(loaded.training_state["optimizer"])
    assert resumed.state_dict()["param_groups"][0]["betas"] == (0.9, 0.999)
    assert loaded.training_state["epoch"] == 3
    assert [p.requires_grad for p in loaded.model.parameters()] == [p.requires_grad for p in trained_model.parameters()]


def test_file_objects_and_plain_weights_only_loading(trained_model):
    buffer = _checkpoint_bytes(trained_model)
    raw = torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)
    assert raw["format_version"] == FORMAT_VERSION and raw["spec"]["name"] == "fcn8s"
    metadata = read_checkpoint_metadata(io.BytesIO(buffer.getvalue()))
    assert metadata.class_names == CLASSES and metadata.step == 0
    assert load_checkpoint(buffer).spec == trained_model.spec


def test_metadata_reads_from_a_path(tmp_path, trained_model):
    save_checkpoint(tmp_path / "m.pt", trained_model, class_names=CLASSES, step=7)
    metadata = read_checkpoint_metadata(tmp_path / "m.pt")
    assert (metadata.spec.name, metadata.step) == ("fcn8s", 7)


@pytest.mark.parametrize("backbone", [name for name in list_backbones() if name != "vgg16"])  # vgg16: above
def test_checkpoint_round_trip_of_every_other_backbone(backbone, tmp_path):
    model = build_model("fcn16s", 3, backbone=backbone).eval()
    save_checkpoint(tmp_path / "model.pt", model, class_names=CLASSES)
    loaded = load_checkpoint(tmp_path / "model.pt")
    images = torch.randn(1, 3, 33, 40)
    with torch.inference_mode():
        torch.testing.assert_close(loaded.model(images), model(images))


def test_wrapped_models_are_saved_unwrapped(trained_model):
    buffer = _checkpoint_bytes(torch.nn.DataParallel(trained_model))
    assert load_checkpoint(buffer).spec == trained_model.spec


def test_mismatched_class_count_or_architecture_is_refused(trained_model):
    data = _checkpoint_bytes(trained_model).getvalue()
    with pytest.raises(CheckpointError, match="predicts 3 classes, not the expected 21") as error:
        load_checkpoint(io.BytesIO(data), expect_num_classes=21)
    _assert_one_line(error)
    with pytest.raises(CheckpointError, match="holds a fcn8s model, not the expected fcn32s") as error:
        load_checkpoint(io.BytesIO(data), expect_name="fcn32s")
    _assert_one_line(error)


def _resaved(trained_model, edit) -> io.BytesIO:
    payload = torch.load(_checkpoint_bytes(trained_model), weights_only=True)
    edit(payload)
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    buffer.seek(0)
    return buffer


def test_missing_or_misshapen_weights_are_refused(trained_model):
    missing = _resaved(trained_model, lambda payload: payload["state_dict"].pop("score_fr.weight"))
    with pytest.raises(CheckpointError, match="missing score_fr.weight") as error:
        load_checkpoint(missing)
    _assert_one_line(error)

    def other_architecture(payload):
        payload["spec"]["options"]["alignment"] = "reference"
        payload["spec"]["name"] = "fcn32s"

    with pytest.raises(CheckpointError, match="unexpected skip_scores.pool4") as error:
        load_checkpoint(_resaved(trained_model, other_architecture))
    _assert_one_line(error)


def test_unknown_options_future_versions_and_foreign_files_are_refused(tmp_path, trained_model):
    unknown = _resaved(trained_model, lambda payload: payload["spec"]["options"].update(depth=7))
    with pytest.raises(CheckpointError, match="cannot build .*unknown model option"):
        load_checkpoint(unknown)
    future = _resaved(trained_model, lambda payload: payload.update(format_version=FORMAT_VERSION + 1))
    with pytest.raises(CheckpointError, match="upgrade"):
        load_checkpoint(future)

    state_dict_only = io.BytesIO()
    torch.save(trained_model.state_dict(), state_dict_only)
    state_dict_only.seek(0)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(os.urandom(1000))
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    text = io.BytesIO(b"not a checkpoint at all " * 10)
    for source in (state_dict_only, garbage, empty, text, tmp_path / "absent.pt"):
        with pytest.raises(CheckpointError) as error:
            load_checkpoint(source)
        _assert_one_line(error)


class _RunsCommand:
    """A pickle payload that would run a shell command when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _CustomObject:
    pass


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # the hand-pickled file uses protocol 4
def test_tampered_checkpoints_are_refused_without_running_anything(tmp_path, trained_model):
    marker = tmp_path / "executed"
    zipped = tmp_path / "tampered.pt"
    payload = torch.load(_checkpoint_bytes(trained_model), weights_only=True)
    torch.save({**payload, "metrics": _RunsCommand(marker)}, zipped)
    legacy = tmp_path / "tampered.pkl"
    with legacy.open("wb") as handle:
        pickle.dump({**payload, "config": _RunsCommand(marker)}, handle)
    custom = io.BytesIO()
    torch.save({**payload, "config": _CustomObject()}, custom)
    custom.seek(0)

    for source in (zipped, legacy, custom):
        with pytest.raises(CheckpointError, match="refused by weights-only loading") as error:
            load_checkpoint(source)
        _assert_one_line(error)
        with pytest.raises(CheckpointError):
            read_checkpoint_metadata(source if not isinstance(source, io.BytesIO) else io.BytesIO(custom.getvalue()))
    assert not marker.exists()


def test_saving_refuses_values_that_would_need_unpickling(tmp_path, trained_model):
    with pytest.raises(CheckpointError, match=r"config.output: PosixPath is not a plain value"):
        save_checkpoint(tmp_path / "x.pt", trained_model, class_names=CLASSES, config={"output": tmp_path})
    with pytest.raises(CheckpointError, match="2 class names for a 3-class model"):
        save_checkpoint(tmp_path / "x.pt", trained_model, class_names=CLASSES[:2])
    with pytest.raises(CheckpointError, match="needs an FCN"):
        save_checkpoint(tmp_path / "x.pt", torch.nn.Linear(2, 2), class_names=CLASSES)
    assert not (tmp_path / "x.pt").exists()
