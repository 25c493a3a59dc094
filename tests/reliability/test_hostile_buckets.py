"""Hostile bucket layouts and stores through the whole segment_bucket job (real Ray, real files).

Each scenario is something a live bucket or a careless command line does to a nightly job: inputs
deleted between runs, names at the filesystem's limit, symlinks out of the input and to FIFOs, the
output inside the input, a single file as the input, credentials pasted into a URI, an output that
cannot be written, a lease file left empty. The job must keep its promises: every input one current
row and, if it is an image, one mask of its own; nothing read outside the input or written outside
the output; no hang, no crash; a failure a user can fix is one line and exit 2.
"""
from __future__ import annotations

import json
import os

import pytest
from fsspec.implementations.local import LocalFileSystem

from jobs import segment_bucket
from tests.reliability.audit import audit_output
from tests.reliability.buckets import put_objects, unique_bucket
from tests.reliability.hostile_corpus import tiny_jpeg

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _images(folder, names: list[str]) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    for seed, name in enumerate(names):
        (folder / name).write_bytes(tiny_jpeg(seed))
    return [str(folder / name) for name in names]


def _segment(input_uri, output_uri, checkpoint, *extra: str) -> int:
    return segment_bucket.main(["--input", str(input_uri), "--output", str(output_uri), "--model", checkpoint,
                                "--batch-size", "2", *extra])


def test_an_input_deleted_between_runs_breaks_no_later_run(ray_local, tmp_path, tiny_checkpoint, fault_report,
                                                           monkeypatch):
    """With tracking on, previews once re-read the ledger's first images: a deleted one failed every run."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlruns.db")
    images, output = tmp_path / "images", tmp_path / "output"
    inputs = _images(images, [f"a{index}.jpg" for index in range(5)])
    first = _segment(images, output, tiny_checkpoint)
    os.remove(inputs[0])  # routine in a live bucket
    inputs += _images(images, ["b0.jpg"])
    second = _segment(images, output, tiny_checkpoint)
    third = _segment(images, output, tiny_checkpoint)
    audit = audit_output(LocalFileSystem(), str(output), inputs)
    fault_report("input", "an input deleted from the bucket between two runs (tracking on)", audit,
                 exit_codes=[first, second, third],
                 detail=f"summary.json after the reruns: {audit.summary is not None}")
    assert [first, second, third] == [0, 0, 0]
    assert audit.summary is not None and audit.summary["images"] == 6
    assert not audit.problems(), audit.problems()


def test_an_object_deleted_from_s3_between_runs_breaks_no_later_run(ray_local, s3_server, s3_files, mlflow_server,
                                                                     tiny_checkpoint, fault_report, monkeypatch):
    """The same on the S3 server, tracked in the MLflow server (artifacts on S3), as a nightly run sees it."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.tracking_uri)
    bucket = unique_bucket(s3_server, "deleted")
    inputs = put_objects(s3_server, bucket, {f"in/a{index}.jpg": tiny_jpeg(index) for index in range(4)})
    output = f"s3://{bucket}/out"
    first = _segment(f"s3://{bucket}/in", output, tiny_checkpoint)
    s3_server.client().delete_object(Bucket=bucket, Key="in/a0.jpg")
    second = _segment(f"s3://{bucket}/in", output, tiny_checkpoint)
    audit = audit_output(s3_files, f"{bucket}/out", inputs)
    fault_report("input", "an object deleted from S3 between two runs (MLflow server)", audit,
                 exit_codes=[first, second], detail=f"summary.json after the rerun: {audit.summary is not None}")
    assert [first, second] == [0, 0]
    assert audit.summary is not None and not audit.problems(), audit.problems()


def test_names_at_the_filesystems_limit_get_their_masks(ray_local, tmp_path, tiny_checkpoint, fault_report):
    """A 255-byte name, and one that escaping makes three times longer, once crashed every run."""
    images, output = tmp_path / "images", tmp_path / "output"
    inputs = _images(images, ["x" * 251 + ".jpg", "%" * 80 + "#?.jpg", "short.jpg"])
    code = _segment(images, output, tiny_checkpoint, "--no-tracking")
    rerun = _segment(images, output, tiny_checkpoint, "--no-tracking")
    audit = audit_output(LocalFileSystem(), str(output), inputs)
    fault_report("input", "file names at the 255-byte limit, and ones that escaping makes longer", audit,
                 exit_codes=[code, rerun], detail="longest mask name in bytes: " + str(max(
                     len(os.path.basename(row["mask_uri"]).encode()) for row in audit.rows if row["mask_uri"])))
    assert [code, rerun] == [0, 0]
    assert audit.counts["ok"] == 3 and not audit.problems(), audit.problems()


@pytest.mark.timeout(180)
def test_symlinks_stay_inside_the_input_and_fifos_hang_nothing(ray_local, tmp_path, tiny_checkpoint, fault_report):
    images, output, elsewhere = tmp_path / "images", tmp_path / "output", tmp_path / "elsewhere"
    inputs = _images(images, ["real.jpg"])
    _images(elsewhere, ["outside.jpg"])
    os.mkfifo(elsewhere / "pipe")
    os.mkfifo(images / "fifo.jpg")
    (images / "inside-link.jpg").symlink_to(images / "real.jpg")
    (images / "outside-link.jpg").symlink_to(elsewhere / "outside.jpg")
    (images / "passwd.jpg").symlink_to("/etc/passwd")
    (images / "pipe-link.jpg").symlink_to(elsewhere / "pipe")
    (images / "dangling.jpg").symlink_to(tmp_path / "nothing-here.jpg")
    inputs.append(str(images / "inside-link.jpg"))

    code = _segment(images, output, tiny_checkpoint, "--no-tracking")
    audit = audit_output(LocalFileSystem(), str(output), inputs)
    leaked = [row for row in audit.rows if "root:" in (row["error"] or "")]
    fault_report("input", "symlinks out of the input (a photo, /etc/passwd), to a FIFO, dangling; a FIFO", audit,
                 exit_codes=[code], detail=f"rows for links out of the input or FIFOs: {len(audit.unexpected)}")
    assert code == 0
    assert not audit.problems() and not leaked, (audit.problems(), leaked)


@pytest.mark.parametrize("where", ["inside", "same"])
def test_an_output_inside_the_input_never_feeds_on_itself(ray_local, tmp_path, tiny_checkpoint, fault_report, where):
    images = tmp_path / "images"
    inputs = _images(images, [f"a{index}.jpg" for index in range(3)])
    output = images / "labels" if where == "inside" else images
    codes = [_segment(images, output, tiny_checkpoint, "--no-tracking") for _ in range(3)]
    audit = audit_output(LocalFileSystem(), str(output), inputs)
    masks = LocalFileSystem().find(str(output / "masks"))
    nested = [path for path in masks if "/masks/" in path.split("/masks/", 1)[1]]  # a mask of a mask
    fault_report("input", f"the output {'inside' if where == 'inside' else 'equal to'} the input, three runs", audit,
                 exit_codes=codes, detail=f"masks segmented as inputs: {len(audit.unexpected)}")
    assert codes == [0, 0, 0]
    assert not audit.problems() and not nested, (audit.problems(), nested)


def test_a_single_file_as_the_input_is_a_corpus_of_one(ray_local, tmp_path, tiny_checkpoint, fault_report):
    inputs = _images(tmp_path / "images", ["one.jpg", "two.jpg"])
    output = tmp_path / "output"
    code = _segment(inputs[0], output, tiny_checkpoint, "--no-tracking", "--max-error-fraction", "1")
    audit = audit_output(LocalFileSystem(), str(output), inputs[:1])
    fault_report("input", "a single file as --input", audit, exit_codes=[code],
                 detail=f"ok rows: {audit.counts['ok']}")
    assert code == 0
    assert audit.counts["ok"] == 1 and not audit.problems(), audit.problems()


def test_credentials_pasted_into_the_uri_are_refused_without_printing_them(tmp_path, tiny_checkpoint, fault_report,
                                                                          capfd):
    secret = "wJalrXUtnFEMIK7MDENGbPxRfiCYzEXAMPLEKEY"
    code = _segment(f"s3://AKIAIOSFODNN7EXAMPLE:{secret}@bucket/in", tmp_path / "output", tiny_checkpoint)
    out, err = capfd.readouterr()
    fault_report("security", "credentials in an S3 URI (s3://KEY:SECRET@bucket/in)", exit_codes=[code],
                 detail=f"the secret printed: {secret in out + err}")
    assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("error: ")
    assert secret not in out + err and "AKIAIOSFODNN7EXAMPLE" not in out + err


def test_an_output_that_cannot_be_written_is_one_line_and_releases_the_lock(ray_local, tmp_path, tiny_checkpoint,
                                                                           fault_report, capfd):
    images, output = tmp_path / "images", tmp_path / "output"
    _images(images, ["a.jpg", "b.jpg"])
    output.mkdir()
    (output / "masks").write_text("a file where the job writes its masks")
    code = _segment(images, output, tiny_checkpoint, "--no-tracking")
    err = capfd.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("error: ")]
    fault_report("fault", "the output cannot be written (masks/ is a file)", exit_codes=[code],
                 detail=f"stderr: {len(errors)} error line, {sum('Traceback' in line for line in err)} tracebacks")
    assert code == 2 and err[-1] == errors[0] and "a file stands where a folder is needed" in errors[0], err
    assert len(errors) == 1 and not any("Traceback" in line for line in err), err
    assert not (output / "_lock.json").exists() and not (output / "summary.json").exists()
    assert not list(output.glob("stats/**/*"))  # nothing committed for images without masks


def test_an_empty_lease_file_does_not_block_the_output(ray_local, tmp_path, tiny_checkpoint, fault_report):
    images, output = tmp_path / "images", tmp_path / "output"
    inputs = _images(images, ["a.jpg"])
    output.mkdir()
    (output / "_lock.json").write_bytes(b"")
    code = _segment(images, output, tiny_checkpoint, "--no-tracking")
    audit = audit_output(LocalFileSystem(), str(output), inputs)
    fault_report("fault", "an empty _lock.json left in the output", audit, exit_codes=[code])
    assert code == 0 and not audit.problems(), audit.problems()
    assert json.loads((output / "summary.json").read_text())["images"] == 1
