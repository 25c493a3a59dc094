"""What a person sees while a job runs: a bar on a terminal, and in a log only lines of the project's shapes.

Each job runs as by hand: a fresh process with its own private Ray, either under a pseudo-terminal
(`pty.fork`, never sized, read back raw: carriage returns and all) or with its console piped, as under
cron or ``ray job submit``. ``FCN_PROGRESS_EVERY_S`` shortens the seconds between progress lines.
"""
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
RUN_TIMEOUT_S = 300
RATE = r"[\d.]+(%s/s|s/%s)"  # tqdm writes a rate under one per second the other way up: 1.87s/image
TINY_TRAINING = ["--width-multiplier", "0.0625", "--alignment", "compact", "--crop-size", "64", "--batch-size", "2",
                 "--val-every", "1", "--epochs", "2"]


def _job_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    env.update(MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path}/mlruns.db", FCN_PROGRESS_EVERY_S="1", **extra)
    return env


def _run_under_a_terminal(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run ``python argv`` on a new pseudo-terminal; its exit status and every byte it wrote there."""
    pid, terminal = pty.fork()
    if pid == 0:  # the child: the job, its stdout and stderr on the terminal
        os.chdir(REPO)
        os.execve(sys.executable, [sys.executable, *argv], env)
    written, deadline = bytearray(), time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        if select.select([terminal], [], [], 1)[0]:
            try:
                chunk = os.read(terminal, 65536)
            except OSError:  # the job ended and closed the terminal
                break
            if not chunk:
                break
            written += chunk
    else:
        os.killpg(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    os.close(terminal)
    return os.waitstatus_to_exitcode(status), written.decode(errors="replace")


def _bar_states(written: str, label: str) -> list[str]:
    """The bar's successive drawings (tqdm redraws it after a carriage return), in order."""
    return [piece.strip() for piece in re.split(r"[\r\n]", written) if piece.startswith(f"{label}:")]


def _no_library_lines(written: str) -> None:
    assert not re.search(r"\(\w+ pid=\d+|core_worker\.cc|Traceback|INFO mlflow|Dataset \w+ execution", written), \
        written[-3000:]


def test_segmentation_on_a_terminal_draws_a_bar_with_rate_and_eta(tmp_path, synthetic_corpus, tiny_checkpoint):
    images = len(list((synthetic_corpus.root / "JPEGImages").iterdir()))
    status, written = _run_under_a_terminal(
        ["jobs/segment_bucket.py", "--input", f"{synthetic_corpus.root}/JPEGImages", "--output",
         str(tmp_path / "out"), "--model", tiny_checkpoint, "--batch-size", "1", "--no-tracking"], _job_env(tmp_path))
    assert status == 0, written[-3000:]
    states = _bar_states(written, "segmented")
    assert len(set(states)) >= 2, states  # drawn, then redrawn as images finish and seconds pass
    # e.g. "segmented: 100%|██████| 22/22 [00:04<00:00,  5.12image/s, errors=0]": done/total, elapsed<ETA, rate
    assert re.search(rf"\| {images}/{images} \[\d\d:\d\d<\d\d:\d\d, +{RATE % ('image', 'image')}, errors=0\]",
                     states[-1]), states
    assert f"segmented {images} images this run" in written
    assert written.count("logs of this job: ") == 1  # however often the run connects to its Ray
    _no_library_lines(written)


def test_training_on_a_terminal_shows_epoch_and_step_with_eta(tmp_path, synthetic_corpus):
    status, written = _run_under_a_terminal(
        ["jobs/train_fcn.py", "--data", str(synthetic_corpus.root), *TINY_TRAINING, "--num-workers", "1",
         "--cpus-per-worker", "1", "--storage-path", str(tmp_path), "--name", "on-a-terminal", "--no-tracking"],
        _job_env(tmp_path))
    assert status == 0, written[-3000:]
    states = _bar_states(written, "trained")
    assert len(set(states)) >= 3, states
    steps = 16 // 2  # the 16 training images, 2 per step, on one worker
    # Every drawing after the first (made before any worker started) says where training is.
    assert all(re.search(rf"\| \d+/{2 * steps} \[\d\d:\d\d<(\?|\d\d:\d\d), .*epoch [12]/2, step \d/{steps}\]", state)
               for state in states[1:]), states
    assert re.search(rf"\| {2 * steps}/{2 * steps} \[\d\d:\d\d<\d\d:\d\d, +{RATE % ('step', 'step')}, epoch 2/2, "
                     rf"step {steps}/{steps}\]", states[-1]), states
    assert re.search(r"\repoch 1/2: loss [\d.]+, [\d.]+ images/s, val mean IU", written)
    _no_library_lines(written)


# Every line a training job prints to a log, tracked and registered, and nothing else.
TRAINING_LINES = [
    r"Ray dashboard of this job: http://127\.0\.0\.1:\d+",
    r"logs of this job: /\S+/logs/fcn-job-\d+\.log \(Ray's beside it\)",
    r"training fcn8s on 2 CPU worker\(s\) of 1 CPU each, 0\.5 CPU kept for data loading; checkpoints under \S+",
    r"trained \d+/8 steps \(epoch [12]/2, step \d/4\)(, starting|, [\d.]+ steps/s(, ETA \d+ s)?)?",
    r"epoch (?P<epoch>[12])/2: loss [\d.]+, [\d.]+ images/s, val mean IU [\d.]+, pixel accuracy [\d.]+",
    r"best checkpoint \S+: mean IU [\d.]+",
    r"checkpoints: \S+",
    r"best checkpoint: \S+checkpoint\.pt",
    r"best metrics: mean_iu=[\d.]+, pixel_accuracy=[\d.]+, mean_accuracy=[\d.]+, frequency_weighted_iu=[\d.]+",
    r"MLflow run: [0-9a-f]{32}",
    r"model: models:/console-test/1",
    r"registered: models:/console-test@candidate  \(use it as segment_bucket\.py --model \S+\)",
    r"champion: models:/console-test@champion is this version, the name's first \(.+\)",
]


def test_a_logged_training_run_prints_only_the_projects_lines(tmp_path, synthetic_corpus):
    """Two workers, tracked and registered: Ray Data's, Ray Train's and MLflow's own lines stay in the log files."""
    result = subprocess.run(
        [sys.executable, "jobs/train_fcn.py", "--data", str(synthetic_corpus.root), *TINY_TRAINING,
         "--num-workers", "2", "--cpus-per-worker", "1", "--storage-path", str(tmp_path), "--name", "logged",
         "--register-as", "console-test"],
        cwd=REPO, env=_job_env(tmp_path, RAY_OVERRIDE_RESOURCES=json.dumps({"CPU": 4})), text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=RUN_TIMEOUT_S)
    assert result.returncode == 0, result.stdout[-3000:]
    lines = result.stdout.splitlines()
    strays = [line for line in lines if not any(re.fullmatch(pattern, line) for pattern in TRAINING_LINES)]
    assert strays == [], result.stdout
    epochs = [match["epoch"] for line in lines if (match := re.fullmatch(TRAINING_LINES[4], line))]
    assert epochs == ["1", "2"]  # one line per epoch, however many workers
    trained = [line for line in lines if line.startswith("trained ")]
    assert any("steps/s" in line for line in trained)
    assert sum(line.startswith("trained 8/8 ") for line in trained) <= 1  # said once when complete, not repeated
    log_file = next(line for line in lines if line.startswith("logs of this job: ")).split()[4]
    assert "Created version '1' of model 'console-test'" in Path(log_file).read_text()
