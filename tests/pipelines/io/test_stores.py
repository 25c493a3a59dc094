"""pipelines.io.stores: the contract every backend keeps, each against its real server (local, S3, GCS).

Byte operations, errors and conditional creates run through `pipelines.io.storage`, as the rest of the
code calls them; the registry is tested on its own.
"""
from __future__ import annotations

import os
import re
import threading
import time
import uuid

import pytest

from infra.local.seaweedfs import start_seaweedfs
from pipelines.errors import AccessDeniedError, BucketNotFoundError, ObjectNotFoundError, StorageUnavailableError
from pipelines.io import storage
from pipelines.io.listing import iter_objects
from pipelines.io.storage import RetryPolicy
from pipelines.io.stores import Store, register_store, registered_schemes, store_of_scheme
from tests.fixtures.gcs_server import start_fake_gcs

FAST_RETRY = RetryPolicy(attempts=3, base_delay_s=0.05, max_delay_s=0.1)
HINTS = {"s3": "AWS_ACCESS_KEY_ID", "gcs": "GOOGLE_APPLICATION_CREDENTIALS"}


# --- registry ------------------------------------------------------------------------------------


def test_every_scheme_has_one_store_and_other_protocols_go_to_fsspec():
    assert registered_schemes() == ["file", "gcs", "gs", "local", "s3", "s3a"]
    assert store_of_scheme("gs://b/k") is store_of_scheme("gcs://b/k") is not store_of_scheme("s3://b/k")
    assert store_of_scheme("/data/x") is store_of_scheme("file:///data/x")
    assert type(store_of_scheme("memory://corpus/a.jpg")) is Store


def test_a_scheme_is_served_by_one_store_only():
    with pytest.raises(ValueError, match="scheme\\(s\\) s3 already served by S3Store"):
        register_store(type("AnotherS3", (Store,), {"schemes": ("s3",)}))
    with pytest.raises(ValueError, match="names no URI scheme"):
        register_store(type("Nameless", (Store,), {}))


def test_stores_without_conditional_writes_promise_nothing_and_write_nothing():
    assert storage.create_new("memory://leases/a.json", b"{}") is False
    assert not storage.exists("memory://leases/a.json")


# --- every backend -------------------------------------------------------------------------------


@pytest.mark.integration
def test_round_trip_of_bytes_uploads_streams_and_removal(backend, tmp_path):
    uri = f"{backend.root}/dir/ünïcode name.bin"
    storage.write_bytes_atomic(uri, b"\x00payload")
    assert storage.exists(uri) and storage.read_bytes(uri) == b"\x00payload"
    local = tmp_path / "big.bin"
    local.write_bytes(os.urandom(300_000))
    storage.upload_file(str(local), f"{backend.root}/up/big.bin")
    assert storage.read_bytes(f"{backend.root}/up/big.bin") == local.read_bytes()
    with storage.open_atomic(f"{backend.root}/streamed.txt") as handle:
        handle.write(b"streamed")
    assert storage.read_bytes(f"{backend.root}/streamed.txt") == b"streamed"
    storage.remove(f"{backend.root}/up", recursive=True)
    assert not storage.exists(f"{backend.root}/up/big.bin")


@pytest.mark.integration
def test_a_failed_streamed_write_leaves_what_was_there(backend):
    backend.put("manifest.parquet", b"old")
    for key in ("manifest.parquet", "new.parquet"):
        with pytest.raises(RuntimeError):
            with storage.open_atomic(f"{backend.root}/{key}") as handle:
                handle.write(b"partial")
                raise RuntimeError("writer crashed")
    assert storage.read_bytes(f"{backend.root}/manifest.parquet") == b"old"
    assert not storage.exists(f"{backend.root}/new.parquet")


@pytest.mark.integration
def test_read_many_keeps_order_and_returns_each_failure(backend, tmp_path):
    names = ("a[1].jpg", "b*.jpg", "c?.jpg")  # glob characters
    for index, name in enumerate(names):
        backend.put(f"many/{name}", bytes([index]) * 10)
    local = tmp_path / "local.bin"
    local.write_bytes(b"local")
    uris = [f"{backend.root}/many/{name}" for name in names]
    missing = f"{backend.root}/many/absent.jpg"
    results = storage.read_many([uris[2], str(local), missing, uris[0], uris[1]], concurrency=2, retry=FAST_RETRY)
    assert results[:2] == [b"\x02" * 10, b"local"] and results[3:] == [b"\x00" * 10, b"\x01" * 10]
    assert isinstance(results[2], ObjectNotFoundError) and str(results[2]) == f"no object or file at {missing}"


@pytest.mark.integration
def test_a_missing_object_and_a_missing_bucket_are_one_line_each(backend):
    with pytest.raises(ObjectNotFoundError, match=f"^no object or file at {re.escape(backend.root)}/nothing-here$"):
        storage.read_bytes(f"{backend.root}/nothing-here")
    if backend.name == "local":
        return
    missing = backend.root.replace("store-", "no-such-")
    with pytest.raises(BucketNotFoundError, match=f"^bucket '{missing.split('/')[-1]}' does not exist at "):
        next(iter_objects(f"{missing}/images"))
    with pytest.raises(BucketNotFoundError, match="create it, or check the bucket name"):
        storage.check_writable(f"{missing}/out")
    storage.check_writable(f"{backend.root}/out")


@pytest.mark.integration
@pytest.mark.parametrize("attempt", range(2))
def test_create_new_lets_exactly_one_of_racing_writers_win(backend, attempt):
    uri = f"{backend.root}/leases/{attempt}.json"
    start = threading.Barrier(6)
    outcomes: dict[int, bool | str] = {}

    def create(index: int) -> None:
        start.wait()
        try:
            outcomes[index] = storage.create_new(uri, f"writer {index}".encode())
        except FileExistsError:
            outcomes[index] = "refused"

    threads = [threading.Thread(target=create, args=(index,)) for index in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [index for index, outcome in outcomes.items() if outcome is True]
    assert len(winners) == 1 and sorted(outcomes.values(), key=str).count("refused") == 5, outcomes
    assert storage.read_bytes(uri) == f"writer {winners[0]}".encode()


# --- object stores: credentials, endpoints, outages ----------------------------------------------


@pytest.mark.integration
def test_wrong_credentials_are_one_line_that_never_shows_the_secret(object_backend, monkeypatch):
    object_backend.put("k", b"x")
    secret = object_backend.spoil_credentials(monkeypatch)
    with pytest.raises(AccessDeniedError) as caught:
        storage.read_bytes(f"{object_backend.root}/k", retry=FAST_RETRY)
    message = str(caught.value)
    assert HINTS[object_backend.name] in message and "\n" not in message and secret not in message


@pytest.mark.integration
@pytest.mark.slow
def test_an_unreachable_store_fails_after_retries_naming_its_endpoint(object_backend, monkeypatch):
    endpoint = object_backend.point_nowhere(monkeypatch)
    with pytest.raises(StorageUnavailableError) as caught:
        storage.read_bytes(f"{object_backend.root}/key", retry=FAST_RETRY)
    message = str(caught.value)
    assert message.startswith(f"could not reach {endpoint} after 3 attempts") and "\n" not in message


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("start", [start_seaweedfs, start_fake_gcs], ids=["s3", "gcs"])
def test_reads_ride_out_a_restart_of_the_store(start, tmp_path, monkeypatch):
    """The store goes away for a few seconds and comes back: retries with backoff carry the read."""
    server = start(tmp_path / "restarting")
    servers = [server]
    restart = threading.Timer(2.0, lambda: servers.append(server.restart()))
    scheme = "s3" if start is start_seaweedfs else "gs"
    try:
        server.create_bucket("restarts")
        for name, value in server.env().items():
            monkeypatch.setenv(name, value)
        storage.write_bytes_atomic(f"{scheme}://restarts/k", b"before")
        server.stop(timeout_s=0.5)
        started = time.monotonic()
        restart.start()
        patient = RetryPolicy(attempts=10, base_delay_s=0.5, max_delay_s=4.0)
        assert storage.read_bytes(f"{scheme}://restarts/k", retry=patient) == b"before"
        assert time.monotonic() - started > 2.0, "the read cannot have succeeded while the store was down"
    finally:
        restart.join()
        servers[-1].stop(timeout_s=0.5)


@pytest.mark.integration
def test_an_s3_server_that_ignores_if_none_match_gets_no_promise(s3_server, monkeypatch):
    """Servers that predate conditional writes accept the PUT and overwrite: the lease must settle instead."""
    from pipelines.io.stores.s3 import S3Store

    bucket = s3_server.create_bucket(f"no-condition-{uuid.uuid4().hex[:8]}")
    assert storage.create_new(f"s3://{bucket}/honoured.json", b"{}") is True
    monkeypatch.setattr(S3Store, "create", lambda self, filesystem, path, data: filesystem.pipe_file(path, data))
    assert storage.create_new(f"s3://{bucket}/ignored.json", b"{}") is False
