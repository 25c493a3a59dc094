"""Progress a person can follow through a long job: a bar on a terminal, a short line every few seconds elsewhere.

Ray Data's own progress (a bar per operator on a terminal, a 16-line block every 10 s in a log) says
how operators are doing, not how far the job is; jobs turn it off (`job_runner.connect_ray`) and
report with `Progress` instead: items done, items/s, errors and, when the total is known, an ETA.
Everything is drawn by the driver: stages and training workers report to counters it polls (`ProgressCounter`,
`StepCounter`).
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import TextIO

# Seconds between two lines off a terminal; FCN_PROGRESS_EVERY_S changes it (the tests shorten it).
LINE_EVERY_S = float(os.environ.get("FCN_PROGRESS_EVERY_S", "5"))
POLL_EVERY_S = 1.0  # how often the driver asks a counter actor how far the stages are
FALLBACK_COLUMNS, FALLBACK_ROWS = 100, 24  # a terminal that reports no size (`_bar_width`)


def format_duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``2 h 07 min``: an ETA at the precision a person plans by."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def progress_line(verb: str, done: int, total: int | None, errors: int | None, rate: float | None,
                  unit: str = "images", note: str | None = None) -> str:
    """``segmented 256/610 images (0 errors), 7.1 images/s, ETA 50 s``.

    ``rate``: items per second, None until it can be measured; no ETA while the total is unknown.
    The parenthesis holds ``note`` when given (``trained 17/36 steps (epoch 2/3, step 5/12)``), else the
    errors, and is left out when neither is counted.
    """
    count = f"{done}/{total}" if total is not None else f"{done}"
    line = f"{verb} {count} {unit}"
    if note is not None or errors is not None:
        line += f" ({note if note is not None else f'{errors} errors'})"
    if rate is None:  # nothing finished yet, or too little to measure a rate
        return line + ", starting" if done == 0 else line
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


class StepCounter:
    """Where training is, as rank 0 tells it: the epoch, its step, and the lines a person should read.

    Kept inside a zero-CPU Ray actor that the driver reads (`polling`): one worker reports, so a run
    of any number of workers shows one bar and one line per epoch on the driver's console.
    """

    def __init__(self):
        self.epoch = self.step = 0
        self.lines: list[str] = []

    def at(self, epoch: int, step: int) -> None:
        self.epoch, self.step = epoch, step

    def say(self, line: str) -> None:
        self.lines.append(line)

    def read(self) -> tuple[int, int, list[str]]:
        """(epoch, step, the lines said since the last read)."""
        lines, self.lines = self.lines, []
        return self.epoch, self.step, lines


@contextlib.contextmanager
def polling(poll: Callable[[], None], every_s: float = POLL_EVERY_S) -> Iterator[None]:
    """Call ``poll`` every ``every_s`` seconds in a thread while the block runs (the driver blocked in
    Ray), and once more after it: the display shows what the stages told a counter actor."""
    finished = threading.Event()

    def keep_polling() -> None:
        while not finished.wait(every_s):
            poll()

    watcher = threading.Thread(target=keep_polling, name="progress", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        finished.set()
        watcher.join()
    poll()


class Progress:
    """Shows how far a job is: a tqdm bar on a terminal, else `log` a line every ``every_s`` seconds.

    ``total``: the number of items expected, or None when the listing is still running (no ETA).
    ``counts_errors``: whether the items can fail (segmentation's images), so that lines show how many did.
    """

    def __init__(self, verb: str, *, total: int | None, log: Callable[[str], None] = print,
                 stream: TextIO | None = None, every_s: float = LINE_EVERY_S, unit: str = "images",
                 counts_errors: bool = True, clock: Callable[[], float] = time.monotonic):
        self.verb, self.total, self.unit, self.log, self.every_s, self.clock = verb, total, unit, log, every_s, clock
        self.counts_errors = counts_errors
        self.done = self.errors = 0
        self.note: str | None = None
        self.last_line = clock()
        # The rate is measured from the first finished items: start-up (workers, model loading)
        # would otherwise make the ETA of a long job wildly pessimistic for its first minutes.
        self._first: tuple[float, int] | None = None
        self.stream = stream or sys.stderr
        self._said_complete = False
        self._bar = None
        if self.stream.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit=unit.rstrip("s") or unit, desc=verb, file=self.stream,
                             **_bar_width(self.stream))

    def report(self, done: int, errors: int = 0, note: str | None = None) -> None:
        """``done`` items are finished so far, ``errors`` of them failed; ``note`` says where the job is."""
        done = min(done, self.total) if self.total is not None else done
        advanced, self.done, self.errors, self.note = done - self.done, done, errors, note
        if self._first is None and done > 0:
            self._first = (self.clock(), done)
        if self._bar is not None:
            if note is not None:
                self._bar.set_postfix_str(note, refresh=False)
            elif self.counts_errors:
                self._bar.set_postfix(errors=errors, refresh=False)
            self._bar.update(advanced)
        elif self.clock() - self.last_line >= self.every_s and not self._said_complete:
            self.log(self.line())
            self.last_line = self.clock()
            # All done: what is left (committing, checkpoints, shutting down) is no progress to repeat.
            self._said_complete = self.total is not None and self.done >= self.total

    def write(self, line: str) -> None:
        """Print ``line`` (an epoch's summary) without breaking the bar: above it on a terminal."""
        if self._bar is not None:
            self._bar.write(line, file=self.stream)
        else:
            self.log(line)

    def rate(self) -> float | None:
        """Items per second since the first ones finished; None before there are two reports to compare."""
        if self._first is None:
            return None
        since, done_then = self._first
        elapsed = self.clock() - since
        return (self.done - done_then) / elapsed if elapsed > 0 and self.done > done_then else None

    def line(self) -> str:
        return progress_line(self.verb, self.done, self.total, self.errors if self.counts_errors else None,
                             self.rate(), self.unit, self.note)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _bar_width(stream: TextIO) -> dict:
    """tqdm's size options for ``stream``: the terminal's size as it changes, or a fixed one where it reports 0.

    tqdm draws nothing on a terminal that reports 0 columns or 0 rows (its bar would be "below the
    screen"), which is what a pseudo-terminal nobody sized reports: a CI runner's, ``script``'s, a
    ``pty.fork`` of a test or a supervisor. Such a run showed only its final summary.
    """
    try:
        size = os.get_terminal_size(stream.fileno())
    except (AttributeError, OSError, ValueError):
        size = os.terminal_size((0, 0))
    if size.columns > 0 and size.lines > 0:
        return {"dynamic_ncols": True}
    return {"ncols": int(os.environ.get("COLUMNS") or FALLBACK_COLUMNS), "nrows": FALLBACK_ROWS}
