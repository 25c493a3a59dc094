"""Progress a person can follow through a long job: a bar on a terminal, a short line every few seconds elsewhere.

Ray Data's own progress (a bar per operator on a terminal, a 16-line block every 10 s in a log) says
how operators are doing, not how far the job is; jobs turn it off (`job_runner.connect_ray`) and
report with `Progress` instead: items done, items/s, errors and, when the total is known, an ETA.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

LINE_EVERY_S = 5.0


def format_duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``2 h 07 min``: an ETA at the precision a person plans by."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def progress_line(verb: str, done: int, total: int | None, errors: int, rate: float | None,
                  unit: str = "images") -> str:
    """``segmented 256/610 images (0 errors), 7.1 images/s, ETA 50 s``.

    ``rate``: items per second, None until it can be measured; no ETA while the total is unknown.
    """
    count = f"{done}/{total}" if total is not None else f"{done}"
    line = f"{verb} {count} {unit} ({errors} errors)"
    if rate is None:
        return line + ", starting"
    line += f", {rate:.1f} {unit}/s"
    if total is not None and rate > 0 and done < total:
        line += f", ETA {format_duration((total - done) / rate)}"
    return line


class ProgressCounter:
    """A tally that pipeline stages add to as they finish items, and the driver reads.

    Kept inside a zero-CPU Ray actor (segmentation's `StatsCommitter`): the driver sees each batch
    as the model finishes it, rather than only when a writer commits its rows (hundreds at a time).
    A retried batch may be counted twice, which a progress display can afford.
    """

    def __init__(self):
        self.done = self.errors = 0

    def add(self, done: int, errors: int = 0) -> None:
        self.done += done
        self.errors += errors

    def totals(self) -> tuple[int, int]:
        return self.done, self.errors


class Progress:
    """Shows how far a job is: a tqdm bar on a terminal, else `log` a line every ``every_s`` seconds.

    ``total``: the number of items expected, or None when the listing is still running (no ETA).
    """

    def __init__(self, verb: str, *, total: int | None, log: Callable[[str], None] = print,
                 stream: TextIO | None = None, every_s: float = LINE_EVERY_S, unit: str = "images",
                 clock: Callable[[], float] = time.monotonic):
        self.verb, self.total, self.unit, self.log, self.every_s, self.clock = verb, total, unit, log, every_s, clock
        self.done = self.errors = 0
        self.last_line = clock()
        # The rate is measured from the first finished items: start-up (workers, model loading)
        # would otherwise make the ETA of a long job wildly pessimistic for its first minutes.
        self._first: tuple[float, int] | None = None
        stream = stream or sys.stderr
        self._bar = None
        if stream.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit=unit.rstrip("s") or unit, desc=verb, file=stream, dynamic_ncols=True)

    def report(self, done: int, errors: int = 0) -> None:
        """``done`` items are finished so far, ``errors`` of them failed."""
        done = min(done, self.total) if self.total is not None else done
        advanced, self.done, self.errors = done - self.done, done, errors
        if self._first is None and done > 0:
            self._first = (self.clock(), done)
        if self._bar is not None:
            self._bar.update(advanced)
            self._bar.set_postfix(errors=errors, refresh=False)
        elif self.clock() - self.last_line >= self.every_s:
            self.log(self.line())
            self.last_line = self.clock()

    def rate(self) -> float | None:
        """Items per second since the first ones finished; None before there are two reports to compare."""
        if self._first is None:
            return None
        since, done_then = self._first
        elapsed = self.clock() - since
        return (self.done - done_then) / elapsed if elapsed > 0 and self.done > done_then else None

    def line(self) -> str:
        return progress_line(self.verb, self.done, self.total, self.errors, self.rate(), self.unit)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
