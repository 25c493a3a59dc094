"""jobs/train_fcn.py end to end: real Ray Train workers, the real S3 server and a real MLflow server.

Models are tiny (VGG16 at 1/16 width, compact alignment, 64-pixel crops) and runs last 1-4 epochs
of the 16-image synthetic corpus, so each run is a few tens of seconds on two cores. The run on S3
(`s3_run`) is made once and read by two tests.
"""
import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import ray
from mlflow import MlflowClient

from fcn_core.checkpoint import load_checkpoint
from fcn_core.masks import decode_mask_png, encode_mask_png
from fcn_core.synthetic import SYNTHETIC_CLASS_NAMES
from jobs import train_fcn
from pipelines.io import storage
from pipelines.training.checkpoints import epoch_of, latest_checkpoint
from tests.fixtures.ray_cluster import start_local_ray

REPO = Path(__file__).resolve().parents[2]
TINY_MODEL = ["--width-multiplier", "0.0625", "--alignment", "compact", "--crop-size", "64", "--batch-size", "4",
              "--val-every", "1", "--lr", "3e-3"]
TINY = [*TINY_MODEL, "--cpus-per-worker", "1"]
TWO_CPU_RUN_TIMEOUT_S = 300  # the run takes about a minute; a hang fails the test after this
PAPER_METRICS = ("val/pixel_accuracy", "val/mean_accuracy", "val/mean_iu", "val/frequency_weighted_iu")


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _steps(client: MlflowClient, run_id: str, key: str) -> list[int]:
    return sorted(metric.step for metric in client.get_metric_history(run_id, key))


def _epochs_on_storage(run_uri: str) -> dict[int, str]:
    """{epoch: checkpoint.pt URI} of the epoch checkpoints under a run directory, local or on S3."""
    filesystem, path = storage.resolve(run_uri)
    found = filesystem.glob(f"{path}/epoch_*/checkpoint.pt")
    return {int(entry.split("/")[-2].removeprefix("epoch_")): storage.join(run_uri, *entry.split("/")[-2:])
            for entry in found}


def _latest_epoch(run_uri: str) -> int | None:
    """The epoch of the run's latest whole checkpoint on storage, as the job sees it (None before the first)."""
    latest = latest_checkpoint(run_uri)
    return None if latest is None else epoch_of(latest)


def _loadable_epochs(run_uri: str) -> list[int]:
    """The epochs whose checkpoint on storage loads: this test's own reading, independent of `latest_checkpoint`."""
    loadable = []
    for epoch, uri in _epochs_on_storage(run_uri).items():
        try:
            load_checkpoint(io.BytesIO(storage.read_bytes(uri)))
        except Exception:  # noqa: BLE001 - still being copied into place
            continue
        loadable.append(epoch)
    return sorted(loadable)


def _stop(driver: subprocess.Popen) -> None:
    """Ctrl-C, then SIGKILL for the driver's whole session (its private Ray included) if it lingers."""
    if driver.poll() is None:
        driver.send_signal(signal.SIGINT)
        try:
            driver.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()


def _artifacts(client: MlflowClient, run_id: str, path: str) -> set[str]:
    return {artifact.path for artifact in client.list_artifacts(run_id, path)}


@pytest.fixture
def tracking(mlflow_server, monkeypatch) -> MlflowClient:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.tracking_uri)
    return MlflowClient(mlflow_server.tracking_uri)


@dataclass(frozen=True)
class S3Run:
    """What `s3_run` ran and printed."""

    name: str
    model_name: str
    storage_path: str
    printed: str


@pytest.fixture(scope="module")
def s3_run(s3_server, gcs_server, s3_corpus, mlflow_server) -> S3Run:
    """One run of two CPU workers on the S3 corpus, tracked in MLflow and registered: 3 epochs (each
    checkpoint kept), seed 3, 4 images per worker. Two tests read it: what it left on S3 and in MLflow,
    and its scores against a run of one worker with the same global batch of 8 (a second run of two
    workers would prove nothing more)."""
    start_local_ray()
    s3_server.create_bucket("training")
    name, model_name, storage_path = _unique("s3-run"), _unique("fcn-test"), "s3://training/runs"
    argv = ["--data", s3_corpus, "--num-workers", "2", "--epochs", "3", *TINY, "--seed", "3", "--keep-checkpoints", "3",
            "--storage-path", storage_path, "--name", name, "--register-as", model_name,
            "--experiment", "train-fcn-tests"]
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(printed):
        patch.setenv("MLFLOW_TRACKING_URI", mlflow_server.tracking_uri)
        code = train_fcn.main(argv)
    assert code == 0, printed.getvalue()[-3000:]
    return S3Run(name, model_name, storage_path, printed.getvalue())


@pytest.mark.integration
@pytest.mark.slow
def test_two_cpu_workers_on_s3_log_to_mlflow_and_register_a_model_segment_bucket_can_use(
        ray_local, s3_corpus, s3_run, tracking):
    assert f"models:/{s3_run.model_name}@candidate" in s3_run.printed

    # Every epoch left a checkpoint on S3 that is a complete model, with the state to continue training.
    checkpoints = _epochs_on_storage(f"{s3_run.storage_path}/{s3_run.name}")
    assert sorted(checkpoints) == [0, 1, 2]
    latest = load_checkpoint(io.BytesIO(storage.read_bytes(checkpoints[2])))
    assert latest.class_names == list(SYNTHETIC_CLASS_NAMES)
    assert latest.training_state["epoch"] == 2 and set(latest.training_state) >= {"optimizer", "scheduler"}
    assert latest.config["training"]["num_workers"] == 2

    # One MLflow run: parameters, per-epoch metrics from rank 0, system metrics, artifacts, the model.
    version = tracking.get_model_version_by_alias(s3_run.model_name, "candidate")
    run = tracking.get_run(version.run_id)
    assert latest.config["mlflow_run_id"] == run.info.run_id
    assert run.info.status == "FINISHED"
    assert run.data.params["num_workers"] == "2" and run.data.params["variant"] == "fcn8s"
    assert _steps(tracking, run.info.run_id, "train/loss") == [0, 1, 2]
    for key in (*PAPER_METRICS, "val/iu_disc", "val/iu_bar"):
        assert _steps(tracking, run.info.run_id, key) == [0, 1, 2], key
    assert any(key.startswith("system/") for key in run.data.metrics)
    assert "config/resolved_config.json" in _artifacts(tracking, run.info.run_id, "config")
    assert {"plots/confusion_matrix.png", "plots/class_iu.png"} <= _artifacts(tracking, run.info.run_id, "plots")
    assert "predictions/val_0.png" in _artifacts(tracking, run.info.run_id, "predictions")

    # The registered alias is a model the batch segmentation job runs with directly.
    from jobs import segment_bucket

    output = f"s3://training/{_unique('segmented')}"
    code = segment_bucket.main(["--input", f"{s3_corpus}/JPEGImages", "--output", output,
                                "--model", f"models:/{s3_run.model_name}@candidate", "--num-actors", "1",
                                "--cpus-per-actor", "1", "--batch-size", "4", "--no-tracking"])
    assert code == 0
    assert storage.exists(storage.join(output, "summary.json"))


def _worker_processes() -> list:
    """Ray Train worker processes of the Ray runtime this test process started."""
    import psutil  # Ray's vendored copy: importable once ray is

    return [child for child in psutil.Process().children(recursive=True)
            if any("RayTrainWorker" in part for part in child.cmdline())]


@pytest.mark.integration
@pytest.mark.slow
def test_a_killed_worker_is_replaced_and_training_continues_from_the_last_checkpoint(
        ray_local, synthetic_corpus, tracking, tmp_path):
    name = _unique("kill")
    argv = ["--data", str(synthetic_corpus.root), "--num-workers", "2", "--epochs", "4", *TINY,
            "--storage-path", str(tmp_path), "--name", name, "--keep-checkpoints", "4"]
    outcome = {}
    runner = threading.Thread(target=lambda: outcome.setdefault("code", train_fcn.main(argv)))
    runner.start()
    deadline = time.monotonic() + 600
    while (_latest_epoch(str(tmp_path / name)) or 0) < 1:
        assert runner.is_alive() and time.monotonic() < deadline, "the run ended before its second checkpoint"
        time.sleep(0.2)
    checkpointed = _latest_epoch(str(tmp_path / name))
    victims = _worker_processes()
    assert len(victims) == 2
    victims[1].send_signal(signal.SIGKILL)
    runner.join(timeout=600)

    assert outcome["code"] == 0
    checkpoint = load_checkpoint(str(_epochs_on_storage(str(tmp_path / name))[3]))
    run_id = checkpoint.config["mlflow_run_id"]
    resumed = [metric.value for metric in tracking.get_metric_history(run_id, "resumed_at_epoch")]
    # Restarted after a checkpoint at least as recent as the latest one when the worker died.
    assert len(resumed) == 1 and checkpointed + 1 <= resumed[0] <= 3
    steps = _steps(tracking, run_id, "train/loss")
    assert set(steps) == {0, 1, 2, 3}
    assert all(steps.count(epoch) == 1 for epoch in range(checkpointed + 1)), steps  # not restarted from zero
    assert checkpoint.training_state["epoch"] == 3


@pytest.mark.integration
@pytest.mark.slow
def test_an_interrupted_run_resumes_after_its_latest_checkpoint_in_the_same_mlflow_run(
        ray_local, synthetic_corpus, tracking, mlflow_server, tmp_path):
    name = _unique("resume")
    run_uri = str(tmp_path / name)
    argv = ["--data", str(synthetic_corpus.root), "--num-workers", "1", "--epochs", "4", *TINY,
            "--storage-path", str(tmp_path), "--name", name, "--keep-checkpoints", "4"]
    # The interrupted run is its own driver process on the test's Ray cluster, stopped with Ctrl-C
    # as soon as its second epoch is on storage: before Ray Train's record of the run has caught up.
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address,
           "MLFLOW_TRACKING_URI": mlflow_server.tracking_uri}
    stderr = tmp_path / "interrupted.err"  # a file, not a pipe: Ray's logs would fill a pipe nobody reads
    with stderr.open("w") as sink:
        driver = subprocess.Popen([sys.executable, "jobs/train_fcn.py", *argv], cwd=REPO, env=env,
                                  stdout=subprocess.DEVNULL, stderr=sink)
    try:
        deadline = time.monotonic() + 600
        while 1 not in _loadable_epochs(run_uri):
            assert driver.poll() is None, stderr.read_text()[-3000:]
            assert time.monotonic() < deadline
            time.sleep(0.05)
        driver.send_signal(signal.SIGINT)
        assert driver.wait(timeout=120) == 130
    finally:
        if driver.poll() is None:
            driver.kill()
    advice = [line for line in stderr.read_text().splitlines() if line.startswith("interrupted") or "--resume" in line]
    interrupted_at = _loadable_epochs(run_uri)[-1]
    assert interrupted_at < 3, "the run finished before it could be interrupted"

    # The same command again refuses to start over; with --resume it continues.
    assert train_fcn.main(argv) == 2
    assert train_fcn.main([*argv, "--resume"]) == 0

    checkpoints = _epochs_on_storage(run_uri)
    assert sorted(checkpoints) == [0, 1, 2, 3]
    run_ids = {load_checkpoint(str(path)).config["mlflow_run_id"] for path in checkpoints.values()}
    assert len(run_ids) == 1
    run_id = run_ids.pop()
    # Continued right after the latest checkpoint on storage: the epochs up to it were trained once.
    # (One the interrupt caught between logging its loss and writing its checkpoint is trained again.)
    assert [m.value for m in tracking.get_metric_history(run_id, "resumed_at_epoch")] == [interrupted_at + 1]
    steps = _steps(tracking, run_id, "train/loss")
    assert set(steps) == {0, 1, 2, 3}
    assert all(steps.count(epoch) == 1 for epoch in range(interrupted_at + 1)), steps
    assert tracking.get_run(run_id).info.status == "FINISHED"
    # One piece of advice, and it is what worked.
    assert advice == [f"interrupted: continue after the latest checkpoint (epoch {interrupted_at + 1}/4) "
                      "with the same command plus --resume"]


@pytest.mark.integration
@pytest.mark.slow
def test_two_workers_on_a_two_cpu_machine_leave_room_for_data_loading_and_finish(synthetic_corpus, tmp_path):
    # The job's own private Ray (no RAY_ADDRESS), with this machine's 2 CPUs rather than the fixtures'
    # 8 logical ones; pinned to 2, so that the test checks the same thing on a larger machine. Workers
    # of 1 CPU each would leave none for the fetch tasks, and the run would wait for data forever.
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    env["RAY_OVERRIDE_RESOURCES"] = json.dumps({"CPU": 2})
    argv = ["--data", str(synthetic_corpus.root), "--num-workers", "2", "--no-use-gpu", "--epochs", "1",
            *TINY_MODEL, "--storage-path", str(tmp_path), "--name", "two-cpus", "--no-tracking"]
    driver = subprocess.Popen([sys.executable, "jobs/train_fcn.py", *argv], cwd=REPO, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        printed, _ = driver.communicate(timeout=TWO_CPU_RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        _stop(driver)
        pytest.fail(f"--num-workers 2 on 2 CPUs did not finish in {TWO_CPU_RUN_TIMEOUT_S} s")
    assert driver.returncode == 0, printed[-3000:]
    ours = [line for line in printed.splitlines() if line.startswith(("training ", "epoch ", "best "))]
    assert ours[0].startswith("training fcn8s on 2 CPU worker(s) of 0.75 CPU each, 0.5 CPU kept for data loading")
    assert _loadable_epochs(str(tmp_path / "two-cpus")) == [0]


def _drop_mask(root: Path) -> str:
    (root / "SegmentationClass" / "000003.png").unlink()
    return "000003"


def _shrink_mask(root: Path) -> str:
    path = root / "SegmentationClass" / "000002.png"
    mask = decode_mask_png(path.read_bytes())
    path.write_bytes(encode_mask_png(np.ascontiguousarray(mask[:-3, :-5])))
    return "000002.png"


def _label_out_of_range(root: Path) -> str:
    path = root / "SegmentationClass" / "000005.png"
    mask = decode_mask_png(path.read_bytes())
    mask[:4, :4] = 9
    path.write_bytes(encode_mask_png(mask))
    return "000005.png"


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("change", [_drop_mask, _shrink_mask, _label_out_of_range])
def test_bad_data_stops_with_one_line_naming_the_file(ray_local, synthetic_corpus, tmp_path, change, capsys):
    root = tmp_path / "corpus"
    shutil.copytree(synthetic_corpus.root, root)
    culprit = change(root)
    code = train_fcn.main(["--data", str(root), "--num-workers", "2", "--epochs", "1", *TINY,
                           "--storage-path", str(tmp_path / "runs"), "--name", "bad", "--no-tracking",
                           "--max-failures", "0"])
    error = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert error[-1].startswith("error: ") and culprit in error[-1], error[-1]


@pytest.mark.integration
@pytest.mark.slow
def test_one_and_two_workers_reach_the_same_metrics_with_the_same_global_batch(ray_local, synthetic_corpus, s3_run,
                                                                              tmp_path):
    # Two workers of 4 images: the run on the S3 copy of the same corpus (`s3_run`: seed 3, 3 epochs).
    two_workers = _epochs_on_storage(f"{s3_run.storage_path}/{s3_run.name}")[2]
    metrics = {2: load_checkpoint(io.BytesIO(storage.read_bytes(two_workers))).metrics}
    argv = ["--data", str(synthetic_corpus.root), "--num-workers", "1", "--epochs", "3", *TINY,
            "--batch-size", "8", "--storage-path", str(tmp_path), "--name", "workers-1", "--no-tracking",
            "--seed", "3"]
    assert train_fcn.main(argv) == 0
    metrics[1] = load_checkpoint(str(_epochs_on_storage(str(tmp_path / "workers-1"))[2])).metrics
    # Ray Data hands rows to workers in no fixed order, so the two runs see the same images in
    # different batches: their scores agree closely, not to the bit. That one step on a split
    # batch equals the step on the whole batch is proven exactly in tests/pipelines/training/test_loop.py.
    for key in PAPER_METRICS:
        assert metrics[1][key] == pytest.approx(metrics[2][key], abs=0.03), key


def test_refusals_are_one_line_before_any_training(tmp_path, synthetic_corpus, capsys):
    base = ["--data", str(synthetic_corpus.root), "--storage-path", str(tmp_path)]
    assert train_fcn.main([*base, "--resume"]) == 2
    assert "--name" in capsys.readouterr().err
    assert train_fcn.main([*base, "--name", "never-ran", "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    assert train_fcn.main([*base, "--name", "x", "--register-as", "m", "--no-tracking"]) == 2
    assert "--no-tracking" in capsys.readouterr().err
    assert train_fcn.main([*base, "--name", "x", "--lr", "0"]) == 2
    assert "--lr" in capsys.readouterr().err


def test_help_explains_defaults_and_the_docstring_shows_both_ways_to_run():
    text = train_fcn.build_parser().format_help()
    assert "(default: fcn8s)" in text and "--register-as" in text and "--backbone-weights" in text
    assert "python jobs/train_fcn.py --data" in train_fcn.__doc__
    assert "ray job submit" in train_fcn.__doc__
