"""jobs/segment_bucket.py end to end: real Ray, the real S3 server and a real MLflow server."""
import io
import json
import os
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient
from PIL import Image

from fcn_core.masks import decode_mask_png
from fcn_core.synthetic import SYNTHETIC_CLASS_NAMES
from jobs import segment_bucket
from tests.fixtures.stats_table import s3_table_options, table_rows

pytestmark = pytest.mark.integration

BAD_FILES = {
    "bad/zero-bytes.jpg": b"",
    "bad/not-an-image.jpg": b"this is a text file with an image extension\n",
    "bad/truncated.png": None,  # filled in below from a real PNG
}


def _png_bytes(size=(40, 30), color=(200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def s3fs_client(s3_server):
    import s3fs

    return s3fs.S3FileSystem(key=s3_server.access_key, secret=s3_server.secret_key,
                             client_kwargs={"endpoint_url": s3_server.endpoint_url})


@pytest.fixture
def input_prefix(s3_server, s3fs_client, synthetic_corpus):
    """Eight good synthetic JPEGs (in two folders, one key with a space) and three bad files."""
    bucket = f"seg-in-{uuid.uuid4().hex[:8]}"
    s3_server.create_bucket(bucket)
    ids = synthetic_corpus.train_ids[:8]
    for index, image_id in enumerate(ids):
        folder = "a" if index % 2 else "b c"
        s3fs_client.put(f"{synthetic_corpus.root}/JPEGImages/{image_id}.jpg", f"{bucket}/{folder}/{image_id}.jpg")
    png = _png_bytes()
    for key, data in BAD_FILES.items():
        s3fs_client.pipe(f"{bucket}/{key}", png[: len(png) // 2] if data is None else data)
    return f"s3://{bucket}", len(ids), len(BAD_FILES)


def _read_stats(s3_server, output_uri):
    return table_rows(output_uri, s3_table_options(s3_server))


def test_segments_a_bucket_and_reruns_idempotently(ray_local, s3_server, mlflow_server, s3fs_client, input_prefix,
                                                   tiny_checkpoint, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.tracking_uri)
    input_uri, good, bad = input_prefix
    output_uri = f"s3://{s3_server.create_bucket('seg-out-' + uuid.uuid4().hex[:8])}/run1"
    argv = ["--input", input_uri, "--output", output_uri, "--model", tiny_checkpoint, "--batch-size", "3",
            "--max-error-fraction", "0.5", "--experiment", "segment-test"]

    assert segment_bucket.main(argv) == 0
    rows = _read_stats(s3_server, output_uri)
    assert len(rows) == good + bad
    assert len({row["image_uri"] for row in rows}) == good + bad
    by_status = {status: [r for r in rows if r["status"] == status] for status in ("ok", "error")}
    assert len(by_status["ok"]) == good and len(by_status["error"]) == bad
    for row in by_status["error"]:
        assert row["error"] and row["mask_uri"] is None
    suffixes = ["background", *SYNTHETIC_CLASS_NAMES[1:]]
    for row in by_status["ok"]:
        image = Image.open(io.BytesIO(s3fs_client.cat(row["image_uri"].removeprefix("s3://"))))
        mask = decode_mask_png(s3fs_client.cat(row["mask_uri"].removeprefix("s3://")))
        assert mask.shape == (image.height, image.width) == (row["height"], row["width"])
        assert mask.max() < len(SYNTHETIC_CLASS_NAMES)
        assert sum(row[f"pixels_{s}"] for s in suffixes) == image.height * image.width
        assert row["mask_uri"].startswith(output_uri + "/masks/")
        assert np.bincount(mask.ravel(), minlength=len(suffixes)).tolist() == [row[f"pixels_{s}"] for s in suffixes]

    summary = json.loads(s3fs_client.cat(output_uri.removeprefix("s3://") + "/summary.json"))
    assert (summary["ok"], summary["error"], summary["processed_this_run"]) == (good, bad, good + bad)
    assert 0 < summary["startup_seconds"] < summary["seconds"]  # until the model actor had loaded
    run = MlflowClient(mlflow_server.tracking_uri).get_run(summary["run_id"])
    assert run.data.metrics["images"] == good + bad and run.data.params["input"] == input_uri
    assert run.data.metrics["startup_seconds"] == summary["startup_seconds"]
    assert summary["steady_images_per_second"] > 0  # from its first batch (of 3 images) on
    assert run.data.metrics["steady_images_per_second"] == summary["steady_images_per_second"]
    artifacts = {a.path for a in MlflowClient(mlflow_server.tracking_uri).list_artifacts(run.info.run_id)}
    assert {"summary.json", "config.json", "previews"} <= artifacts
    assert summary["run_id"] in capsys.readouterr().out

    # The same command again: nothing to do, nothing written twice, summary back in place.
    assert segment_bucket.main(argv) == 0
    assert len(_read_stats(s3_server, output_uri)) == good + bad
    summary = json.loads(s3fs_client.cat(output_uri.removeprefix("s3://") + "/summary.json"))
    assert summary["processed_this_run"] == 0 and summary["images"] == good + bad
    assert summary["startup_seconds"] is None  # no model was loaded: nothing to segment
    assert summary["steady_images_per_second"] is None

    # --overwrite redoes everything, still one row per image.
    assert segment_bucket.main([*argv, "--overwrite"]) == 0
    assert len(_read_stats(s3_server, output_uri)) == good + bad


def test_too_many_errors_exit_non_zero_without_summary(ray_local, s3_server, s3fs_client, input_prefix,
                                                       tiny_checkpoint, capsys):
    input_uri, good, bad = input_prefix
    output_uri = f"s3://{s3_server.create_bucket('seg-err-' + uuid.uuid4().hex[:8])}/run"
    code = segment_bucket.main(["--input", input_uri, "--output", output_uri, "--model", tiny_checkpoint,
                                "--max-error-fraction", "0.1", "--no-tracking"])
    assert code == 2
    assert "--max-error-fraction" in capsys.readouterr().err
    assert not s3fs_client.exists(output_uri.removeprefix("s3://") + "/summary.json")
    assert len(_read_stats(s3_server, output_uri)) == good + bad  # every row is still committed


@pytest.mark.parametrize("model", ["models:/does-not-exist@champion", "/nowhere/model.pt"])
def test_bad_model_reference_is_one_clear_line(ray_local, tmp_path, synthetic_corpus, model, capsys):
    code = segment_bucket.main(["--input", f"{synthetic_corpus.root}/JPEGImages", "--output", str(tmp_path / "o"),
                                "--model", model, "--no-tracking"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error:") and model.split("@")[0] in err[0]


# Runs the job in a fresh process and says whether it started Ray (a test process may hold one already).
_JOB_THEN_REPORT_RAY = """
import sys, ray
from jobs import segment_bucket
from tests.fixtures.stats_table import s3_table_options, table_rows
code = segment_bucket.main(sys.argv[1:])
print("ray started:", ray.is_initialized())
sys.exit(code)
"""


MISTAKES = ("input", "model", "output", "batch-size", "limit", "max-side")


@dataclass(frozen=True)
class MistakeRun:
    result: subprocess.CompletedProcess
    output: Path  # the --output given
    store: Path  # the MLflow store the process was pointed at


def _run_mistake(mistake: str, folder: Path, synthetic_corpus, tiny_checkpoint) -> MistakeRun:
    store = folder / "mlruns.db"
    output = folder / "out"
    flags = {"--input": f"{synthetic_corpus.root}/JPEGImages", "--output": str(output), "--model": tiny_checkpoint}
    if mistake == "input":
        flags["--input"] = f"{synthetic_corpus.root}/JPEGImagez"
    elif mistake == "model":
        flags["--model"] = str(folder / "nowhere.pt")
    elif mistake == "output":
        (folder / "a-file").write_text("not a folder")
        output = folder / "a-file" / "out"
        flags["--output"] = str(output)
    else:
        flags[f"--{mistake}"] = {"batch-size": "0", "limit": "0", "max-side": "-5"}[mistake]
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{store}"
    result = subprocess.run([sys.executable, "-c", _JOB_THEN_REPORT_RAY, *[x for kv in flags.items() for x in kv]],
                            env=env, capture_output=True, text=True, timeout=300,
                            cwd=Path(__file__).resolve().parents[2])
    return MistakeRun(result, output, store)


@pytest.fixture(scope="module")
def mistake_runs(tmp_path_factory, synthetic_corpus, tiny_checkpoint) -> dict[str, MistakeRun]:
    """Each mistake's job in a fresh process of its own, two at a time: a process spends its seconds importing."""
    folders = {mistake: tmp_path_factory.mktemp(f"mistake-{mistake}") for mistake in MISTAKES}
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = {mistake: pool.submit(_run_mistake, mistake, folder, synthetic_corpus, tiny_checkpoint)
                for mistake, folder in folders.items()}
        return {mistake: run.result() for mistake, run in runs.items()}


@pytest.mark.parametrize("mistake", MISTAKES)
def test_a_mistake_fails_in_one_line_before_ray_starts_and_leaves_nothing_behind(mistake_runs, mistake):
    run = mistake_runs[mistake]
    err = run.result.stderr.strip().splitlines()
    assert run.result.returncode == 2, run.result.stderr
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert "ray started: False" in run.result.stdout
    assert not run.output.exists()
    if run.store.exists():  # the tracking check may create the store; it must hold no run
        client = MlflowClient(f"sqlite:///{run.store}")
        experiments = [e.experiment_id for e in client.search_experiments()]
        assert not experiments or client.search_runs(experiments) == []
