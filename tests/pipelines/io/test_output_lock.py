"""pipelines.io.output_lock: one writer per output, on every backend (conditional create) and elsewhere (settle)."""
from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid

import pytest

from pipelines.errors import OutputBusyError, StorageUnavailableError
from pipelines.io import storage
from pipelines.io.output_lock import OutputLock


def _race(output: str, *, settle_s: float, runs: int = 4) -> list[OutputLock | OutputBusyError]:
    """``runs`` threads acquiring the same output at once; each gets its lock or the error it raised."""
    start = threading.Barrier(runs)
    outcomes: list[OutputLock | OutputBusyError] = []

    def attempt(index: int) -> None:
        lock = OutputLock(output, owner=f"run {index}", settle_s=settle_s)
        start.wait()
        try:
            outcomes.append(lock.acquire())
        except OutputBusyError as error:
            outcomes.append(error)

    threads = [threading.Thread(target=attempt, args=(index,)) for index in range(runs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def test_create_new_writes_once_and_never_replaces(tmp_path):
    uri = str(tmp_path / "sub" / "lease.json")
    assert storage.create_new(uri, b"first")
    with pytest.raises(FileExistsError):
        storage.create_new(uri, b"second")
    assert storage.read_bytes(uri) == b"first" and [p.name for p in (tmp_path / "sub").iterdir()] == ["lease.json"]


def test_a_local_output_is_locked_at_once_and_only_once(tmp_path):
    started = time.monotonic()
    with OutputLock(str(tmp_path), owner="first", settle_s=30.0) as held:
        assert time.monotonic() - started < 5.0  # no settle delay where the create is atomic
        with pytest.raises(OutputBusyError, match="held by first"):
            OutputLock(str(tmp_path), owner="second", settle_s=30.0).acquire()
        assert held.token in storage.read_bytes(held.uri).decode()
    assert not storage.exists(held.uri)


@pytest.mark.parametrize("attempt", range(3))
def test_racing_runs_on_a_local_output_leave_exactly_one_holder(tmp_path, attempt):
    outcomes = _race(str(tmp_path / f"out-{attempt}"), settle_s=30.0)
    held = [outcome for outcome in outcomes if isinstance(outcome, OutputLock)]
    assert len(held) == 1 and len(outcomes) == 4
    held[0].release()


def test_a_stale_local_lease_is_taken_over_after_the_settle_delay(tmp_path):
    lease = {"token": "old", "owner": "crashed run", "host": "elsewhere", "pid": 1, "renewed_at": 0.0}
    storage.write_bytes_atomic(str(tmp_path / "_lock.json"), json.dumps(lease).encode())
    started = time.monotonic()
    with OutputLock(str(tmp_path), owner="next run", settle_s=0.5) as held:
        assert time.monotonic() - started >= 0.5
        assert held.token in storage.read_bytes(held.uri).decode()


@pytest.mark.parametrize("content", [b"", b'{"token": "cut sh', b"[]"])
def test_an_unreadable_lease_is_stale_not_a_lock_forever(tmp_path, content):
    """An empty or cut-short ``_lock.json`` (a full disk, a killed writer) is taken over, not waited for."""
    (tmp_path / "_lock.json").write_bytes(content)
    with OutputLock(str(tmp_path), owner="next run", settle_s=0.1) as held:
        assert held.token in storage.read_bytes(held.uri).decode()
    assert not (tmp_path / "_lock.json").exists()


@pytest.mark.integration
@pytest.mark.parametrize("attempt", range(2))
def test_racing_runs_leave_exactly_one_holder_at_once_on_every_backend(backend, attempt):
    """Every backend creates the lease only if absent: no settle delay, never two holders."""
    started = time.monotonic()
    outcomes = _race(f"{backend.root}/out-{attempt}", settle_s=30.0)
    held = [outcome for outcome in outcomes if isinstance(outcome, OutputLock)]
    assert len(held) == 1 and len(outcomes) == 4, outcomes
    assert time.monotonic() - started < 10.0
    held[0].release()
    assert not storage.exists(held[0].uri)


def test_racing_runs_on_a_store_without_conditional_writes_settle_to_exactly_one_holder():
    outcomes = _race(f"memory://locks/{uuid.uuid4().hex[:8]}", settle_s=0.5)
    held = [outcome for outcome in outcomes if isinstance(outcome, OutputLock)]
    assert len(held) == 1, outcomes
    held[0].release()


@pytest.mark.parametrize("failure", [None, ValueError("a bug")])
def test_a_run_that_ends_otherwise_releases_with_the_full_retry_budget(tmp_path, monkeypatch, failure):
    budgets = []
    read = storage.read_bytes
    monkeypatch.setattr(storage, "read_bytes", lambda uri, *, retry: budgets.append(retry.attempts) or read(uri))
    with pytest.raises(ValueError) if failure else contextlib.nullcontext():
        with OutputLock(str(tmp_path), owner="run", settle_s=0.1):
            budgets.clear()
            if failure:
                raise failure
    assert budgets == [storage.DEFAULT_RETRY.attempts]
    assert not (tmp_path / "_lock.json").exists()


def test_a_run_stopped_by_an_unreachable_store_tries_once_to_delete_its_lease_and_keeps_its_own_error(
        tmp_path, monkeypatch):
    """The store has just outlasted a whole retry budget: a second one for the lease would double the wait."""
    budgets = []

    def unreachable(uri, *, retry):
        budgets.append(retry.attempts)
        raise StorageUnavailableError("could not reach the store while deleting the lease")

    with pytest.raises(StorageUnavailableError, match="while writing masks"):
        with OutputLock(str(tmp_path), owner="run", settle_s=0.1):
            monkeypatch.setattr(storage, "read_bytes", unreachable)
            raise StorageUnavailableError("could not reach the store while writing masks")
    assert budgets == [1]
