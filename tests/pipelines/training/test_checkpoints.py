"""Epoch checkpoints: complete models that also carry what it takes to continue training."""
import json
import os

import ray.train
import torch

from fcn_core.checkpoint import load_checkpoint
from fcn_core.metrics import ConfusionMatrix
from fcn_core.models import build_model
from pipelines.training.checkpoints import (
    CHECKPOINT_FILE,
    VALIDATION_FILE,
    checkpoint_uri,
    epoch_dir_name,
    epoch_of,
    latest_checkpoint,
    read_epoch_checkpoint,
    write_epoch_checkpoint,
)
from pipelines.training.config import TrainConfig
from pipelines.training.optimization import build_optimizer, build_scheduler

CLASSES = ["background", "thing"]


def _trained_state():
    config = TrainConfig(data="d", name="n", epochs=5)
    model = build_model("fcn32s", 2, width_multiplier=1 / 16, alignment="compact")
    optimizer = build_optimizer(config, model)
    scheduler = build_scheduler(config, optimizer)
    model(torch.rand(1, 3, 32, 32)).mean().backward()
    optimizer.step()
    scheduler.step()
    return config, model, optimizer, scheduler


def test_round_trip_restores_model_optimizer_and_schedule(tmp_path):
    config, model, optimizer, scheduler = _trained_state()
    confusion = ConfusionMatrix(2)
    confusion.update(torch.tensor([[0, 1]]), torch.tensor([[0, 0]]))
    directory = tmp_path / epoch_dir_name(3)
    directory.mkdir()
    write_epoch_checkpoint(str(directory), model, class_names=CLASSES, epoch=3, metrics={"val/mean_iu": 0.25},
                           config={"training": config.to_dict()}, optimizer=optimizer, scheduler=scheduler,
                           confusion=confusion)

    restored = read_epoch_checkpoint(str(directory / CHECKPOINT_FILE))
    assert restored.epoch == 3 and restored.loaded.step == 4
    assert restored.loaded.class_names == CLASSES
    for key, value in model.state_dict().items():
        assert torch.equal(restored.loaded.model.state_dict()[key], value)
    fresh_optimizer = build_optimizer(config, restored.loaded.model)
    fresh_scheduler = build_scheduler(config, fresh_optimizer)  # then the states, as the training loop does
    fresh_optimizer.load_state_dict(restored.optimizer_state)
    fresh_scheduler.load_state_dict(restored.scheduler_state)
    assert fresh_scheduler.last_epoch == scheduler.last_epoch
    assert fresh_optimizer.param_groups[0]["lr"] == optimizer.param_groups[0]["lr"]
    moments = [state["exp_avg"] for state in fresh_optimizer.state.values()]
    assert moments and all(torch.equal(a, b["exp_avg"]) for a, b in zip(moments, optimizer.state.values()))

    record = json.loads((directory / VALIDATION_FILE).read_text())
    assert record["confusion_matrix"] == [[1, 1], [0, 0]] and record["epoch"] == 3
    # Any epoch's checkpoint is a model on its own, as segment_bucket.py loads it.
    assert load_checkpoint(str(directory / CHECKPOINT_FILE)).spec.name == "fcn32s"


def test_unvalidated_epochs_write_no_validation_record(tmp_path):
    config, model, optimizer, scheduler = _trained_state()
    write_epoch_checkpoint(str(tmp_path), model, class_names=CLASSES, epoch=0, metrics={}, config={},
                           optimizer=optimizer, scheduler=scheduler, confusion=None)
    assert os.listdir(tmp_path) == [CHECKPOINT_FILE]


def test_the_latest_whole_checkpoint_on_storage_is_what_a_run_continues_after(tmp_path):
    _, model, optimizer, scheduler = _trained_state()
    run = tmp_path / "run"
    for epoch in range(3):
        directory = run / epoch_dir_name(epoch)
        directory.mkdir(parents=True)
        # Never registered by Ray Train (no checkpoint_manager_snapshot.json): storage alone decides.
        write_epoch_checkpoint(str(directory), model, class_names=CLASSES, epoch=epoch, metrics={}, config={},
                               optimizer=optimizer, scheduler=scheduler, confusion=None)
    latest = latest_checkpoint(str(run))
    assert latest == str(run / epoch_dir_name(2) / CHECKPOINT_FILE) and epoch_of(latest) == 2

    # An interrupt cut the copy of the last one short: the one before is the latest whole one.
    path = run / epoch_dir_name(2) / CHECKPOINT_FILE
    path.write_bytes(path.read_bytes()[:-100])
    assert latest_checkpoint(str(run)) == str(run / epoch_dir_name(1) / CHECKPOINT_FILE)
    assert read_epoch_checkpoint(latest_checkpoint(str(run))).epoch == 1


def test_a_run_without_checkpoints_has_nothing_to_continue_after(tmp_path):
    (tmp_path / "run" / epoch_dir_name(0)).mkdir(parents=True)  # Ray made the folder, the copy never started
    assert latest_checkpoint(str(tmp_path / "run")) is None
    assert latest_checkpoint(str(tmp_path / "absent")) is None


def test_checkpoint_uris_point_at_the_file_inside_rays_checkpoint_directory(tmp_path):
    (tmp_path / epoch_dir_name(7)).mkdir()
    checkpoint = ray.train.Checkpoint.from_directory(str(tmp_path / epoch_dir_name(7)))
    assert checkpoint_uri("s3://bucket/runs/name", checkpoint) == f"s3://bucket/runs/name/epoch_0007/{CHECKPOINT_FILE}"
