"""Driving a job while a test injects a fault: run it in a thread, wait for a moment, find its Ray workers."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

import psutil

from jobs import segment_bucket

T = TypeVar("T")


def wait_for(condition: Callable[[], T], *, what: str, running: Callable[[], bool] = lambda: True,
             timeout_s: float = 600, interval_s: float = 0.2) -> T:
    """Poll ``condition`` until it returns something truthy, which is returned.

    Fails if ``running()`` turns false first (the job ended before the moment the test waits for)
    or after ``timeout_s`` (generous: the machine may be heavily shared).
    """
    deadline = time.monotonic() + timeout_s
    while not (found := condition()):
        assert running(), f"the job ended before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(interval_s)
    return found


def start_segment_bucket(argv: list[str]) -> tuple[threading.Thread, dict[str, int]]:
    """Run ``segment_bucket.main(argv)`` in a thread; its exit code lands in ``outcome["code"]``."""
    outcome: dict[str, int] = {}
    runner = threading.Thread(target=lambda: outcome.setdefault("code", segment_bucket.main(argv)),
                              name="segment_bucket")
    runner.start()
    return runner, outcome


def ray_workers(*stages: str) -> list[psutil.Process]:
    """Worker processes of this process's own Ray runtime that host one of ``stages``.

    Ray titles a worker process after the actor it hosts (``ray::MapWorker(MapBatches(SegmentImages))``).
    The process tree is used rather than Ray's state API, which without a dashboard may answer for
    another Ray instance on a shared machine.
    """
    found = []
    for process in psutil.Process().children(recursive=True):
        try:
            title = process.cmdline()[0] if process.cmdline() else ""
        except psutil.Error:
            continue
        if title.startswith("ray::") and any(stage in title for stage in stages):
            found.append(process)
    return found
