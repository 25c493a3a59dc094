"""The advice an interrupted training run ends with: one way to continue, and the command that does it."""
import pytest

from fcn_core.checkpoint import save_checkpoint
from fcn_core.models import build_model
from pipelines.training.checkpoints import CHECKPOINT_FILE, epoch_dir_name
from pipelines.training.config import TrainConfig
from pipelines.training.run import resume_hint


@pytest.fixture
def run_with_two_epochs(tmp_path) -> TrainConfig:
    config = TrainConfig(data="d", name="voc-8s", storage_path=str(tmp_path), epochs=30)
    model = build_model("fcn32s", 2, width_multiplier=1 / 16, alignment="compact")
    for epoch in range(2):
        directory = tmp_path / config.name / epoch_dir_name(epoch)
        directory.mkdir(parents=True)
        save_checkpoint(str(directory / CHECKPOINT_FILE), model, class_names=["a", "b"],
                        training_state={"epoch": epoch})
    return config


def test_the_hint_names_the_epoch_resume_continues_after_and_the_flags_it_needs(run_with_two_epochs):
    config = run_with_two_epochs
    after = "continue after the latest checkpoint (epoch 2/30) with the same command"
    assert resume_hint(config, named=True) == f"{after} plus --resume"
    assert resume_hint(config, named=False) == f"{after} plus --resume --name voc-8s"
    config.resume = True
    assert resume_hint(config, named=True) == after


def test_a_run_interrupted_before_its_first_checkpoint_starts_again(tmp_path):
    config = TrainConfig(data="d", name="fresh", storage_path=str(tmp_path))
    assert resume_hint(config, named=True) == "no epoch was checkpointed yet: rerun the same command to start again"
