"""pipelines.io.storage: URI resolution, local atomic writes, retries and error messages.

What every backend must do against its real server is in test_stores.py.
"""
from __future__ import annotations

import errno
import os
import time

import pytest
from fsspec.implementations.local import LocalFileSystem

from pipelines.errors import (
    AccessDeniedError,
    BucketNotFoundError,
    CredentialsInUriError,
    ObjectNotFoundError,
    StorageError,
    StorageUnavailableError,
)
from pipelines.io import storage
from pipelines.io.storage import RetryPolicy

# --- resolution and paths ------------------------------------------------------------------------


def test_local_paths_and_file_uris_resolve_to_absolute_local_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    filesystem, path = storage.resolve("images/a.jpg")
    assert isinstance(filesystem, LocalFileSystem) and path == str(tmp_path / "images" / "a.jpg")
    assert storage.resolve(f"file://{tmp_path}/b c.png")[1] == f"{tmp_path}/b c.png"


def test_s3_uses_the_endpoint_from_the_environment_and_caches_per_setting(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    first, path = storage.resolve("s3://bucket/some/key.jpg")
    assert path == "bucket/some/key.jpg" and first.endpoint_url == "http://127.0.0.1:1"
    assert storage.resolve("s3://other/x")[0] is first
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:2")  # the S3-specific variable wins
    second = storage.resolve("s3://bucket/key")[0]
    assert second is not first and second.endpoint_url == "http://127.0.0.1:2"


def test_gcs_uses_the_emulator_from_the_environment_and_caches_per_setting(monkeypatch):
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "127.0.0.1:1")  # gcloud's form: no scheme
    first, path = storage.resolve("gs://bucket/some/key.jpg")
    assert path == "bucket/some/key.jpg" and first.base == "http://127.0.0.1:1/storage/v1/"
    assert storage.resolve("gcs://other/x")[0] is first and first.credentials.method == "anon"
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:2")
    assert storage.resolve("gs://bucket/key")[0].base == "http://127.0.0.1:2/storage/v1/"


def test_a_missing_google_credentials_file_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "127.0.0.1:1")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "absent.json"))
    with pytest.raises(AccessDeniedError, match="^no usable Google Cloud credentials for gs://b/k: check "
                                                        "GOOGLE_APPLICATION_CREDENTIALS"):
        storage.read_bytes("gs://b/k")


def test_object_keys_stay_literal_while_local_paths_are_normalised():
    # ".." is an ordinary part of an S3 key; on a filesystem it means the parent folder.
    assert storage.resolve("s3://bucket/a/../b c/ü.jpg")[1] == "bucket/a/../b c/ü.jpg"
    assert storage.resolve("/data/a/../b.jpg")[1] == "/data/b.jpg"


def test_other_fsspec_protocols_resolve_through_fsspec():
    filesystem, path = storage.resolve("memory://corpus/a.jpg")
    assert "memory" in filesystem.protocol and path == "/corpus/a.jpg"


def test_join_puts_single_slashes_between_parts():
    assert storage.join("s3://b/out/", "/masks/", "a b/x.png") == "s3://b/out/masks/a b/x.png"
    assert storage.join("/data", "stats", "part-0.parquet") == "/data/stats/part-0.parquet"


# --- local byte operations -----------------------------------------------------------------------


def test_write_bytes_atomic_replaces_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "deep" / "out.json"
    storage.write_bytes_atomic(str(target), b"first")
    storage.write_bytes_atomic(str(target), b"second")
    assert target.read_bytes() == b"second"
    assert os.listdir(target.parent) == ["out.json"]


def test_open_atomic_keeps_the_old_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "manifest.parquet"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with storage.open_atomic(str(target)) as handle:
            handle.write(b"partial")
            raise RuntimeError("writer crashed")
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["manifest.parquet"]


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_every_local_write_gets_the_permissions_of_an_ordinary_write(tmp_path, umask):
    """Team members and downstream services read what a job wrote as the writer's umask allows."""
    source = tmp_path / "source.bin"
    source.write_bytes(b"x")
    previous = os.umask(umask)
    try:
        with open(tmp_path / "ordinary", "wb"):
            pass
        storage.write_bytes_atomic(str(tmp_path / "atomic.json"), b"{}")
        with storage.open_atomic(str(tmp_path / "streamed.parquet")) as handle:
            handle.write(b"rows")
        storage.upload_file(str(source), str(tmp_path / "uploaded.bin"))
        assert storage.create_new(str(tmp_path / "lease.json"), b"{}")
    finally:
        os.umask(previous)
    expected = 0o666 & ~umask
    modes = {name: (tmp_path / name).stat().st_mode & 0o777
             for name in ("ordinary", "atomic.json", "streamed.parquet", "uploaded.bin", "lease.json")}
    assert modes == dict.fromkeys(modes, expected)


def test_atomic_writes_work_for_names_at_the_filesystem_limit(tmp_path):
    """A 255-byte name (the usual limit) is written, not refused for its temporary file's longer name."""
    target = tmp_path / ("m" * 251 + ".png")
    storage.write_bytes_atomic(str(target), b"mask")
    assert storage.create_new(str(tmp_path / ("l" * 255)), b"lease")
    assert target.read_bytes() == b"mask" and sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [target.name, "l" * 255])


def test_local_read_exists_remove_and_upload(tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(b"payload")
    copy = str(tmp_path / "copies" / "c.bin")
    storage.upload_file(str(source), copy)
    assert storage.exists(copy) and storage.read_bytes(copy) == b"payload"
    storage.remove(copy)
    storage.remove(copy)  # absent is fine
    assert not storage.exists(copy)
    with pytest.raises(ObjectNotFoundError, match="no object or file at"):
        storage.read_bytes(copy)


# --- retries -------------------------------------------------------------------------------------


class Flaky:
    """Raises the given errors in turn, then returns "ok"; counts its calls."""

    def __init__(self, *errors: Exception):
        self.errors = list(errors)
        self.calls = 0

    def __call__(self):
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def test_transient_errors_are_retried_with_growing_delays():
    flaky = Flaky(ConnectionRefusedError(111, "refused"), TimeoutError("slow"))
    started = time.monotonic()
    assert storage.run_io("s3://b/k", flaky, retry=RetryPolicy(attempts=3, base_delay_s=0.1, max_delay_s=1.0)) == "ok"
    # Jittered sleeps of [0.05, 0.1] then [0.1, 0.2] seconds.
    assert flaky.calls == 3 and 0.15 <= time.monotonic() - started < 1.0


def test_permanent_errors_are_not_retried():
    flaky = Flaky(FileNotFoundError("gone"))
    with pytest.raises(ObjectNotFoundError, match="^no object or file at gs://b/k$"):
        storage.run_io("gs://b/k", flaky, retry=RetryPolicy(attempts=5, base_delay_s=0.01, max_delay_s=0.01))
    assert flaky.calls == 1


@pytest.mark.parametrize(("uri", "variable", "endpoint"), [("s3://b/k", "AWS_ENDPOINT_URL", "http://s3.example"),
                                                          ("gs://b/k", "STORAGE_EMULATOR_HOST", "http://gcs.example")])
def test_an_unreachable_store_after_all_attempts_is_one_clear_error(uri, variable, endpoint, monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.setenv(variable, endpoint)
    flaky = Flaky(*[ConnectionResetError(104, "reset")] * 3)
    with pytest.raises(StorageUnavailableError) as caught:
        storage.run_io(uri, flaky, retry=RetryPolicy(attempts=3, base_delay_s=0.01, max_delay_s=0.01))
    message = str(caught.value)
    assert message.startswith(f"could not reach {endpoint} after 3 attempts over ") and "\n" not in message
    assert message.endswith(f"check that the store is up and {variable} points at it")


@pytest.mark.integration
def test_reading_from_a_missing_s3_bucket_names_the_bucket(s3_server):
    with pytest.raises(BucketNotFoundError) as caught:
        storage.read_bytes("s3://no-such-bucket-here/key")
    assert "'no-such-bucket-here' does not exist" in str(caught.value)


def test_local_write_failures_a_user_fixes_are_one_line_storage_errors(tmp_path):
    (tmp_path / "masks").write_text("a file where the job needs a folder")
    with pytest.raises(StorageError, match="a file stands where a folder is needed") as raised:
        storage.write_bytes_atomic(str(tmp_path / "masks" / "a.png"), b"png")
    assert "\n" not in str(raised.value)
    with pytest.raises(StorageError, match="a file stands where a folder is needed"):
        with storage.open_atomic(str(tmp_path / "masks" / "part.parquet")) as handle:
            handle.write(b"rows")
    for number, words in ((errno.ENOSPC, "no space left"), (errno.EROFS, "read-only"),
                          (errno.EISDIR, "a folder stands where a file is needed")):
        translated = storage.translate_error(OSError(number, os.strerror(number)), "/out/x")
        assert isinstance(translated, StorageError) and words in str(translated)


@pytest.mark.parametrize("uri", ["s3://AKIAEXAMPLE:wJalrXUtnFEMI%2Fs3cr3t@bucket/in", "s3://AKIAEXAMPLE@bucket/x.jpg",
                                 "gcs://user:s3cr3t@bucket/in/"])
def test_credentials_in_a_uri_are_refused_without_repeating_them(uri):
    with pytest.raises(CredentialsInUriError) as raised:
        storage.resolve(uri)
    message = str(raised.value)
    assert "s3cr3t" not in message and "AKIAEXAMPLE" not in message and "***@bucket" in message
