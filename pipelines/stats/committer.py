"""The one writer of a run's statistics: gathers the write stage's rows and commits them in batches.

One committer per run (a zero-CPU Ray actor; runs are kept apart by the output lease) means
commits never race and never retry against each other, and it sets the grain of commits apart
from the grain of the pipeline: every ``commit_rows`` rows or ``commit_seconds``, whichever comes
first. That grain is what a crash can cost (rows not yet committed are segmented again by the
next run; their masks are already written and are simply rewritten), and it keeps a 10M-image
table at a few thousand commits instead of one per batch.

Exactly once: the write stage hands over a batch only after its masks are written, and a batch
handed over twice (Ray retried a write task after it had reached the committer) is recognised by
the digest of its image URIs and dropped. A commit whose answer was lost (a store outage) is
recognised in the table's history by its run and sequence number before it is tried again.
"""
from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.errors import StorageUnavailableError
from pipelines.io import storage
from pipelines.io.lineage import SetDigest
from pipelines.io.storage import DEFAULT_RETRY
from pipelines.io.stores.retry import with_retries
from pipelines.runtime.progress import ProgressCounter
from pipelines.stats.keys import column_suffixes
from pipelines.stats.rows import ERROR, OK
from pipelines.stats.table import StatsTable, Totals

DEFAULT_COMMIT_ROWS = 4096
DEFAULT_COMMIT_SECONDS = 60.0
_RUN_KEY, _WRITER_KEY, _SEQUENCE_KEY = "fcn_pipeline.run_id", "fcn_pipeline.writer", "fcn_pipeline.commit"


@dataclass(frozen=True)
class CommitReport:
    """What one run's committer committed, for the run's summary; `CommitReport()` is a run with nothing to do."""

    totals: Totals = field(default_factory=Totals)  # of this run's rows
    version: int | None = None  # the table's version after this run's compaction; None: nothing committed
    commits: int = 0
    sample: list[dict] = field(default_factory=list)  # the run's first good rows, for previews
    labelled: SetDigest = field(default_factory=SetDigest)  # of the images this run labelled
    model_ready_at: float | None = None  # wall clock, when the first model actor had loaded; None: none did
    steady_rate: float | None = None  # images per second of the model stage, first batch to last

    @property
    def ok(self) -> int:
        return self.totals.ok

    @property
    def error(self) -> int:
        return self.totals.error


def _unreachable(error: Exception) -> bool:
    return isinstance(error, StorageUnavailableError)


def batch_digest(image_uris: list[str]) -> bytes:
    """What identifies a batch of rows: its image URIs, whatever their order."""
    return hashlib.sha256("\n".join(sorted(image_uris)).encode()).digest()[:16]


def batch_totals(rows: pa.Table, class_names: list[str]) -> Totals:
    """The ok/error counts and per-class pixel sums of ``rows`` (one run's new rows)."""
    status = rows.column("status")
    return Totals(ok=int(pc.sum(pc.equal(status, OK)).as_py() or 0),
                  error=int(pc.sum(pc.equal(status, ERROR)).as_py() or 0),
                  class_pixels={name: int(pc.sum(rows.column(f"pixels_{suffix}")).as_py() or 0)
                                for name, suffix in zip(class_names, column_suffixes(class_names))})


class StatsCommitter:
    """Buffers statistics rows and commits them to the output's table; `finish` commits the rest and compacts.

    It also keeps the model stage's tally for the driver's progress display (`count_segmented`), its
    steady rate, and when the first model actor was ready (`model_ready`: the end of the run's start-up):
    one helper process per run rather than two, because each Ray actor process costs about a
    CPU-second to start, and on a small node that second comes out of the model actor's start.
    """

    def __init__(self, output_uri: str, class_names: list[str], *, partition: str | None, run_id: str | None,
                 commit_rows: int = DEFAULT_COMMIT_ROWS, commit_seconds: float = DEFAULT_COMMIT_SECONDS,
                 sample_rows: int = 0):
        self.table = StatsTable.of(output_uri)
        self.class_names = class_names
        self.partition = partition
        self.run_id = run_id or ""
        self.commit_rows = commit_rows
        self.commit_seconds = commit_seconds
        self.sample_rows = sample_rows
        self.pending: list[pa.Table] = []
        self.pending_since: float | None = None
        self.received: set[bytes] = set()
        self.totals = Totals(class_pixels=dict.fromkeys(class_names, 0))
        self.sample: list[dict] = []  # the first good rows, for previews
        self.labelled = SetDigest()  # of the images this run labelled: the run's MLflow input
        self.writer = uuid.uuid4().hex  # tells this committer's commits from any other's
        self.commits = 0
        self.attempt: tuple[str, int] | None = None  # (sequence, batches) of a failed commit that may have landed
        self.version: int | None = None
        self.model_progress = ProgressCounter()
        self.model_ready_at: float | None = None  # wall clock, when the first model actor had loaded
        self.first_batch: tuple[float, int] | None = None  # (monotonic time, images) of the first finished batch
        self.last_batch_at: float | None = None

    def add(self, rows: pa.Table) -> bool:
        """Take one batch's rows; False when the same batch was handed over before (and is dropped)."""
        digest = batch_digest(rows.column("image_uri").to_pylist())
        if digest in self.received:
            return False
        self.received.add(digest)
        self.pending.append(rows)
        self.pending_since = self.pending_since or time.monotonic()
        self.totals = self.totals.plus(batch_totals(rows, self.class_names))
        self.labelled.add(f"{uri}\t{etag or ''}" for uri, etag in
                          zip(rows.column("image_uri").to_pylist(), rows.column("etag").to_pylist()))
        if len(self.sample) < self.sample_rows:
            good = rows.filter(pc.equal(rows.column("status"), OK)).select(["image_uri", "mask_uri"])
            self.sample += good.slice(0, self.sample_rows - len(self.sample)).to_pylist()
        if (sum(table.num_rows for table in self.pending) >= self.commit_rows
                or time.monotonic() - self.pending_since >= self.commit_seconds):
            self._commit()
        return True

    def count_segmented(self, done: int, errors: int) -> None:
        """The model stage finished ``done`` more images, ``errors`` of them failed (told per batch)."""
        self.model_progress.add(done, errors)
        self.last_batch_at = time.monotonic()
        self.first_batch = self.first_batch or (self.last_batch_at, done)

    def steady_rate(self) -> float | None:
        """Images/s of the model stage from its first finished batch to its last; None before a second batch.

        What a longer run sustains: the run's start-up and its first batch (which also grows the
        model actor's heap to a forward pass's size: `pipelines.runtime.cpu_allocator`) are left out.
        """
        if self.first_batch is None or self.last_batch_at <= self.first_batch[0]:
            return None
        first_at, first_images = self.first_batch
        return (self.model_progress.totals()[0] - first_images) / (self.last_batch_at - first_at)

    def model_ready(self) -> None:
        """A model actor has loaded its model; the first one to say so ends the run's start-up."""
        if self.model_ready_at is None:
            self.model_ready_at = time.time()

    def segmented(self) -> tuple[int, int]:
        """(images, errors) the model stage has finished so far: ahead of the committed rows."""
        return self.model_progress.totals()

    def finish(self) -> CommitReport:
        """Commit what is pending and compact this run's files; what the run committed, for its summary."""
        self._commit()
        if self.commits:
            self.version = self.table.compact(partition=self.partition)
        return CommitReport(totals=self.totals, version=self.version, commits=self.commits, sample=self.sample,
                            labelled=self.labelled, model_ready_at=self.model_ready_at,
                            steady_rate=self.steady_rate())

    def _commit(self) -> None:
        """Commit the pending batches, riding out a store that is briefly unreachable.

        An unreachable store is retried as every other storage call is (`storage.DEFAULT_RETRY`:
        about 10 s of backoff): delta-rs retries single requests, but a commit is several, and
        one that fails half-way would otherwise stop the run.
        """
        with_retries(self._commit_once, DEFAULT_RETRY, is_transient=_unreachable, is_unreachable=_unreachable,
                     endpoint=storage.store_for(self.table.uri).endpoint(self.table.uri),
                     hint=f"while committing statistics to {self.table.uri}; check that the store is up")

    def _commit_once(self) -> None:
        """Commit the pending batches as the next commit of this committer's sequence.

        After a failed attempt, first look whether it landed after all: if so, the batches it
        held are committed and only those that arrived since go into a new commit.
        """
        if self.attempt is not None:
            sequence, batches = self.attempt
            if self._landed(sequence):
                self._committed(batches)
            self.attempt = None
        if not self.pending:
            return
        sequence, batches = str(self.commits + 1), len(self.pending)
        self.attempt = (sequence, batches)
        rows = pa.concat_tables(self.pending, promote_options="default").sort_by("image_uri")
        self.table.append(rows, partition=self.partition,
                          metadata={_RUN_KEY: self.run_id, _WRITER_KEY: self.writer, _SEQUENCE_KEY: sequence})
        self.attempt = None
        self._committed(batches)

    def _committed(self, batches: int) -> None:
        self.commits += 1
        self.pending = self.pending[batches:]
        self.pending_since = time.monotonic() if self.pending else None

    def _landed(self, sequence: str) -> bool:
        """Whether commit ``sequence`` is in the table already: an earlier try whose answer was lost."""
        table = self.table.open()
        history = [] if table is None else self.table.call("reading", lambda: table.history(limit=3))
        return any(commit.get(_WRITER_KEY) == self.writer and commit.get(_SEQUENCE_KEY) == sequence
                   for commit in history)
