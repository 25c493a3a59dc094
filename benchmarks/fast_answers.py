"""How fast the jobs answer when the answer is short: ``--help``, a mistake, a night with nothing new.

A scheduler that runs the nightly job every hour pays its start-up every hour, and a person who
mistypes a flag waits for the one-line error. Each timing is a fresh process, as a shell or a
scheduler starts it, the median of ``--rounds`` runs, printed against two baselines measured in the
same run: ``python -c pass`` and a bare ``import ray``. Goals (issue 27), on the 2-core machine:

- ``--help`` of every job: at most 1 s;
- every argument and input mistake: one line in at most 2 s;
- a nightly run with nothing new, on an output of 1,000 images: at most 5 s, without starting Ray
  or loading the model, still recorded as an MLflow run with 0 images.

The set-up (a tiny registered model, ``--images`` small images, one nightly run that labels them,
in a store of its own) is not timed.

    python -m benchmarks.fast_answers                 # 1,000 images, 3 rounds: about 3 minutes
    python -m benchmarks.fast_answers --tiny          # 20 images, 1 round: what the test suite runs
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
JOBS = sorted(path.name for path in (ROOT / "jobs").glob("[a-z]*.py"))
MODEL_NAME = "fast-answers"
GOALS = {"help": 1.0, "mistake": 2.0, "nothing new": 5.0}
HEAVY_MODULES = ("ray", "torch", "mlflow")


def timed(argv: list[str], env: dict[str, str], cwd: Path, *, expect: int) -> tuple[float, str]:
    """Seconds a fresh process takes; its last line of output. Fails if the exit status is not ``expect``."""
    started = time.perf_counter()
    result = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - started
    if result.returncode != expect:
        raise SystemExit(f"{' '.join(argv)} exited {result.returncode}, expected {expect}:\n"
                         f"{result.stdout}{result.stderr}")
    lines = (result.stderr or result.stdout).strip().splitlines()
    return seconds, lines[-1] if lines else ""


def heavy_imports(argv: list[str], env: dict[str, str], cwd: Path) -> list[str]:
    """Which of Ray, torch and MLflow a run imports (from ``python -X importtime``; a run of its own, untimed)."""
    result = subprocess.run([argv[0], "-X", "importtime", *argv[1:]], env=env, cwd=cwd, capture_output=True,
                            text=True, timeout=600, check=True)
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()
                if line.startswith("import time:")}
    return [module for module in HEAVY_MODULES if module in imported]


def median_seconds(argv: list[str], env: dict[str, str], cwd: Path, *, expect: int, rounds: int) -> tuple[float, str]:
    runs = [timed(argv, env, cwd, expect=expect) for _ in range(rounds)]
    return statistics.median(seconds for seconds, _ in runs), runs[-1][1]


def set_up(root: Path, images: int, env: dict[str, str]) -> tuple[Path, Path]:
    """A store with ``MODEL_NAME``@champion (a tiny FCN-8s), ``images`` 64x64 images, a night that labelled them."""
    from benchmarks.common import corpus_and_checkpoint

    images_dir, checkpoint = corpus_and_checkpoint(root, images=images, size=64, width=1 / 16)
    register = ("import sys\n"
                "from pipelines.tracking.client import TrackingSettings\n"
                "from pipelines.tracking.models import log_checkpoint_model\n"
                "from pipelines.tracking.runs import start_run\n"
                "with start_run(TrackingSettings(experiment='fast-answers'), 'register', params={}):\n"
                f"    log_checkpoint_model(sys.argv[1], registered_model_name={MODEL_NAME!r})\n")
    subprocess.run([sys.executable, "-c", register, checkpoint], env=env, cwd=ROOT, check=True,
                   capture_output=True, timeout=600)
    output = root / "nightly"
    timed(nightly(images_dir, output), env, root, expect=0)
    return images_dir, output


def nightly(images_dir: Path, output: Path, *, model: str = MODEL_NAME) -> list[str]:
    return [sys.executable, str(ROOT / "jobs" / "nightly_label.py"), "--input", str(images_dir),
            "--output", str(output), "--model-name", model, "--date", "2026-12-07"]


def mistakes(images_dir: Path, output: Path, root: Path) -> dict[str, list[str]]:
    """A typical mistake per job and kind, each answered with exit status 2 and one line."""
    missing = str(root / "no-such-folder")

    def run(job: str, *flags: str) -> list[str]:
        return [sys.executable, str(ROOT / "jobs" / job), *flags]

    return {
        "segment_bucket.py --batch-size 0": run("segment_bucket.py", "--input", str(images_dir), "--output",
                                                str(root / "x"), "--model", "m.pt", "--batch-size", "0"),
        "segment_bucket.py, --input missing": run("segment_bucket.py", "--input", missing, "--output",
                                                  str(root / "x"), "--model", f"models:/{MODEL_NAME}@champion"),
        "nightly_label.py, --input missing": nightly(Path(missing), output),
        "nightly_label.py, --model-name misspelt": nightly(images_dir, output, model=MODEL_NAME + "x"),
        "train_fcn.py --epochs 0": run("train_fcn.py", "--data", str(images_dir), "--epochs", "0"),
        "train_fcn.py, --data missing": run("train_fcn.py", "--data", missing),
        "evaluate.py, --data missing": run("evaluate.py", "--model", f"models:/{MODEL_NAME}@champion", "--data",
                                           missing),
        "compare_models.py, a checkpoint missing": run("compare_models.py", "--models", str(root / "model.pt"),
                                                       str(root / "missing.pt"), "--data", str(root / "corpus"),
                                                       "--split", "train"),
        "export_labels.py, --output not a job's": run("export_labels.py", "--output", missing, "--to",
                                                      str(root / "x.zip")),
        "import_labels.py, --from missing": run("import_labels.py", "--output", str(output), "--from",
                                                str(root / "missing.zip"), "--to", str(root / "labelled")),
    }


def main(argv: list[str] | None = None) -> tuple[list[tuple[str, str, float, str]], list[str]]:
    """Measure and print; returns the rows (kind, what, seconds, last line of output) and what an idle night imports."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1000, help="images in the nightly output")
    parser.add_argument("--rounds", type=int, default=3, help="runs per timing (the median is printed)")
    parser.add_argument("--tiny", action="store_true", help="20 images, 1 round: a check that it runs")
    args = parser.parse_args(argv)
    images, rounds = (20, 1) if args.tiny else (args.images, args.rounds)

    with tempfile.TemporaryDirectory(prefix="fast-answers-") as scratch:
        root = Path(scratch)
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{root}/store/mlruns.db",
               "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        env.pop("RAY_ADDRESS", None)
        print(f"set-up: a registered tiny FCN-8s, {images} images, one night that labels them ...", flush=True)
        images_dir, output = set_up(root, images, env)

        python_s, _ = median_seconds([sys.executable, "-c", "pass"], env, root, expect=0, rounds=rounds)
        ray_s, _ = median_seconds([sys.executable, "-c", "import ray"], env, root, expect=0, rounds=rounds)
        rows: list[tuple[str, str, float, str]] = []
        for job in JOBS:
            seconds, _ = median_seconds([sys.executable, str(ROOT / "jobs" / job), "--help"], env, root,
                                        expect=0, rounds=rounds)
            rows.append(("help", f"{job} --help", seconds, ""))
        for what, command in mistakes(images_dir, output, root).items():
            seconds, line = median_seconds(command, env, root, expect=2, rounds=rounds)
            rows.append(("mistake", what, seconds, line))
        seconds, line = median_seconds(nightly(images_dir, output), env, root, expect=0, rounds=rounds)
        rows.append(("nothing new", f"nightly_label.py, {images} images, nothing new", seconds, line))
        idle_imports = heavy_imports(nightly(images_dir, output), env, root)

    print(f"\nbaselines: python -c pass {python_s:.2f} s, import ray {ray_s:.2f} s "
          f"(medians of {rounds}; every row is a fresh process)\n")
    print("| kind | what | seconds | x import ray | goal | met |\n|---|---|---:|---:|---:|---|")
    for kind, what, seconds, _ in rows:
        goal = GOALS[kind]
        print(f"| {kind} | {what} | {seconds:.2f} | {seconds / ray_s:.1f} | {goal:g} s | "
              f"{'yes' if seconds <= goal else 'NO'} |")
    print("\nwhat each mistake answered:")
    for _, what, _, line in rows:
        if line:
            print(f"  {what}: {line}")
    print(f"\na night with nothing new imports: {', '.join(idle_imports) or 'none'} of {', '.join(HEAVY_MODULES)} "
          f"(MLflow records its run; Ray and torch are for nights with work)")
    worst = {kind: max(seconds for k, _, seconds, _ in rows if k == kind) for kind in GOALS}
    print("\nslowest per kind: " + ", ".join(f"{kind} {seconds:.2f} s (goal {GOALS[kind]:g} s)"
                                            for kind, seconds in worst.items()))
    return rows, idle_imports


if __name__ == "__main__":
    main()
