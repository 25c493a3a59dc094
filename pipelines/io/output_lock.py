"""One writer per output prefix: a lease file that works on any store.

The lock is a lease file, ``OUTPUT/_lock.json``:

1. If it exists and is fresh (its holder renewed it within ``ttl_s``, and, when the holder ran on
   this host, its process is alive), the output is busy: fail at once.
2. If there is none and the store can create an object only if it is absent (`storage.create_new`:
   local folders, S3, GCS; see `pipelines.io.stores`), create our lease (a random token) that way: of
   two runs that raced through step 1, one creates it and the other is told the output is busy.
   No waiting.
3. Otherwise (a store without "create if absent", such as any other fsspec protocol or an
   S3-compatible server that ignores ``If-None-Match``; or a stale lease to take over), write our
   lease, wait ``settle_s`` and read it back. Two runs that raced through step 1 both write;
   whichever wrote last owns the lock and the other sees a foreign token and backs off. This relies
   on the store being strongly consistent and on the gap between a run's check and its write being
   shorter than ``settle_s``.
4. The holder renews the lease from a background thread while it works and deletes it at the end.

A run killed with ``kill -9`` leaves a lease behind; on the same host it is recognised as stale at
once (its pid is gone), elsewhere after ``ttl_s`` without renewal. A run that stops because the store
stopped answering tries once to delete its lease and otherwise leaves it to go stale the same way.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from typing import NoReturn

from pipelines.errors import OutputBusyError, StorageUnavailableError
from pipelines.io import storage
from pipelines.io.stores.retry import DEFAULT_RETRY, RetryPolicy, causes

LOCK_NAME = "_lock.json"
# Deleting the lease after the store has just outlasted a whole retry budget: one try, no backoff.
_ONE_TRY = RetryPolicy(attempts=1)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class OutputLock:
    def __init__(self, output_uri: str, *, owner: str, ttl_s: float = 300.0, settle_s: float = 1.0):
        self.uri = storage.join(output_uri, LOCK_NAME)
        self.owner = owner
        self.ttl_s = ttl_s
        self.settle_s = settle_s
        self.token = uuid.uuid4().hex
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def _lease(self) -> bytes:
        return json.dumps({"token": self.token, "owner": self.owner, "host": socket.gethostname(),
                           "pid": os.getpid(), "renewed_at": time.time()}).encode()

    def _current(self, retry: RetryPolicy = DEFAULT_RETRY) -> dict | None:
        """The lease on storage; None when there is none, ``{}`` when it is unreadable (empty, cut short).

        An unreadable lease holds no renewal time, so it is stale: taken over (step 3), never waited for.
        """
        try:
            lease = json.loads(storage.read_bytes(self.uri, retry=retry))
        except FileNotFoundError:
            return None
        except ValueError:
            return {}
        return lease if isinstance(lease, dict) else {}

    def _is_fresh(self, lease: dict) -> bool:
        if time.time() - float(lease.get("renewed_at", 0)) > self.ttl_s:
            return False
        if lease.get("host") == socket.gethostname():
            return _process_alive(int(lease.get("pid", -1)))
        return True

    def acquire(self) -> OutputLock:
        lease = self._current()
        if lease is not None and self._is_fresh(lease):
            raise OutputBusyError(
                f"{self.uri} is held by {lease.get('owner')} (pid {lease.get('pid')} on {lease.get('host')}); "
                f"wait for that run to finish, or delete the lock file if it is certainly dead")
        if not (lease is None and self._create_atomically()):
            self._write_and_settle()
        self._renewer = threading.Thread(target=self._renew, daemon=True, name="output-lock-renewer")
        self._renewer.start()
        return self

    def _create_atomically(self) -> bool:
        """Create our lease where there is none (step 2); False where the store cannot promise atomicity."""
        try:
            return storage.create_new(self.uri, self._lease())
        except FileExistsError:
            lease = self._current()
            if lease and lease.get("token") == self.token:
                return True  # our own create, retried after its answer was lost
            self._raise_taken()

    def _write_and_settle(self) -> None:
        """Write our lease over whatever is there, wait, and check it is still ours (step 3)."""
        storage.write_bytes_atomic(self.uri, self._lease())
        time.sleep(self.settle_s)
        lease = self._current()
        if lease is None or lease.get("token") != self.token:
            self._raise_taken()

    def _raise_taken(self) -> NoReturn:
        lease = self._current()
        holder = lease.get("owner") if lease else "another run"
        raise OutputBusyError(f"{self.uri} was taken by {holder} at the same moment; try again later")

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            storage.write_bytes_atomic(self.uri, self._lease())

    def release(self, retry: RetryPolicy = DEFAULT_RETRY) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
        lease = self._current(retry)
        if lease is not None and lease.get("token") == self.token:
            storage.remove(self.uri, retry=retry)

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, kind, error, trace) -> None:
        if error is None or not any(isinstance(cause, StorageUnavailableError) for cause in causes(error)):
            self.release()
            return
        # The run stops because the store did not answer through a whole retry budget. A second
        # budget spent on deleting the lease would only delay the job's error by as long again (and
        # its own failure would hide the run's); left behind, the lease is stale at once on this
        # host (our pid is gone) and elsewhere after ``ttl_s``.
        with contextlib.suppress(StorageUnavailableError):
            self.release(_ONE_TRY)
