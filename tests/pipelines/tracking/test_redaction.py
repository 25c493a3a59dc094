"""One redaction for every credential a recorded URI or message may carry, safe while the environment changes."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from pipelines.errors import StorageError
from pipelines.runtime.job_runner import EXIT_USER_ERROR, run_cli
from pipelines.tracking.client import TrackingSettings
from pipelines.tracking.redaction import environment_snapshot, flatten_params, redact

REPO = Path(__file__).resolve().parents[3]
SIGNATURE = "c2lnbmF0dXJlLW9mLXRoZS11cmw0ZjJh"

PRESIGNED = {
    "s3 sigv4": (f"https://bucket.s3.amazonaws.com/m.pt?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAEXAMPLE"
                 f"%2F20261207%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Expires=3600&X-Amz-Security-Token=tok{SIGNATURE}"
                 f"&X-Amz-Signature={SIGNATURE}"),
    "s3 v2": f"https://bucket.s3.amazonaws.com/m.pt?AWSAccessKeyId=AKIAEXAMPLE&Expires=1&Signature={SIGNATURE}",
    "gcs v4": f"https://storage.googleapis.com/b/m.pt?X-Goog-Credential=sa%40p.iam&X-Goog-Signature={SIGNATURE}",
    "azure sas": f"https://acct.blob.core.windows.net/c/m.pt?sv=2022-11-02&se=2026-12-08&sp=r&sig={SIGNATURE}%3D",
    "token": f"https://models.example/m.pt?token={SIGNATURE}",
    "api key": f"https://models.example/m.pt?alt=media&key={SIGNATURE}",
    "user info": f"https://user:{SIGNATURE}@models.example/m.pt",
}


@pytest.mark.parametrize("form", sorted(PRESIGNED))
def test_every_url_form_loses_its_credentials_and_keeps_the_rest(form):
    uri = PRESIGNED[form]
    masked = redact(f"model {uri} loaded")
    assert SIGNATURE not in masked
    assert "AKIAEXAMPLE" not in masked and "sa%40p" not in masked
    assert masked.startswith("model https://") and masked.endswith(" loaded")
    assert "***" in masked


@pytest.mark.parametrize("uri", ["s3://bucket/images/date=2026-12-07/a.png", "gs://b/tokens/key.png",
                                 "https://h/a.png?width=512&monkey=1", "file:///data/keyframes/x.jpg"])
def test_ordinary_uris_are_left_as_they_are(uri):
    assert redact(uri) == uri


def test_parameters_and_settings_are_redacted_through_the_same_function():
    params = flatten_params({"model": PRESIGNED["s3 sigv4"], "nested": {"source": PRESIGNED["azure sas"]}})
    assert all(SIGNATURE not in value for value in params.values())
    assert params["model"] == redact(PRESIGNED["s3 sigv4"])


def test_a_jobs_console_and_its_one_line_error_are_redacted(capsys):
    def job():
        print(f"segmenting with {PRESIGNED['gcs v4']}")
        raise StorageError(f"cannot read {PRESIGNED['s3 sigv4']}: access denied")

    assert run_cli(job) == EXIT_USER_ERROR
    captured = capsys.readouterr()
    assert SIGNATURE not in captured.out + captured.err
    assert captured.out == f"segmenting with {redact(PRESIGNED['gcs v4'])}\n"
    assert captured.err.startswith("error: cannot read https://bucket.s3.amazonaws.com/m.pt?")


def test_a_bugs_traceback_is_redacted_too():
    code = ("import sys\nfrom pipelines.runtime.job_runner import run_cli\n"
            f"def job():\n    raise RuntimeError({PRESIGNED['token']!r})\nsys.exit(run_cli(job))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "RuntimeError: https://models.example/m.pt?token=***" in result.stderr
    assert SIGNATURE not in result.stderr


def test_reading_the_environment_is_safe_while_threads_change_it(monkeypatch):
    """MLflow's telemetry thread sets and deletes variables while a job redacts and starts up."""
    monkeypatch.setenv("FCN_TEST_SECRET_TOKEN", SIGNATURE)
    stop = threading.Event()

    def churn():
        count = 0
        while not stop.is_set():
            os.environ[f"FCN_CHURN_{count % 50}"] = "x" * 16
            os.environ.pop(f"FCN_CHURN_{(count + 25) % 50}", None)
            count += 1

    thread = threading.Thread(target=churn, daemon=True)
    thread.start()
    try:
        for _ in range(3000):
            assert redact(f"t={SIGNATURE}") == "t=***"
            assert "FCN_TEST_SECRET_TOKEN" in environment_snapshot()
            TrackingSettings()
    finally:
        stop.set()
        thread.join()
        for index in range(50):
            os.environ.pop(f"FCN_CHURN_{index}", None)


def test_a_downloaded_model_is_removed_when_the_process_ends(tmp_path, tiny_checkpoint):
    """A model fetched from a remote URI lands in TMPDIR; the process that fetched it leaves nothing there."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    served = tmp_path / "served"
    served.mkdir()
    (served / "model.pt").write_bytes(Path(tiny_checkpoint).read_bytes())
    code = ("import sys\nfrom pipelines.tracking.models import resolve_model_reference\n"
            f"path = resolve_model_reference('memory://{served}/model.pt').checkpoint_path\n"
            "print(path)\n"
            "sys.exit(3 if sys.argv[1] == 'fail' else 0)\n")
    for outcome, status in (("succeed", 0), ("fail", 3)):
        prepare = f"import fsspec; fsspec.filesystem('memory').put('{served}/model.pt', '{served}/model.pt')\n"
        result = subprocess.run([sys.executable, "-c", prepare + code, outcome], cwd=REPO, capture_output=True,
                                text=True, timeout=120, env={**os.environ, "TMPDIR": str(scratch)})
        assert result.returncode == status, result.stderr
        assert result.stdout.strip().startswith(str(scratch))  # it was downloaded there...
        assert list(scratch.iterdir()) == []  # ...and is gone once the process ended
    assert tempfile.gettempdir() != str(scratch)
