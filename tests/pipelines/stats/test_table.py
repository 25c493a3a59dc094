"""The statistics table, its committer and the ledger read from it, on local folders (no Ray needed)."""
from __future__ import annotations

import datetime
import os
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray

from pipelines.errors import StatsLayoutError, StorageUnavailableError
from pipelines.stats.committer import StatsCommitter
from pipelines.stats.ledger import SkipPolicy, SkipSet, drop_done, hash_ledger
from pipelines.stats.rows import Provenance, build_stats_table, stats_schema
from pipelines.stats.table import StatsTable, Totals
from tests.fixtures.stats_table import table_rows

CLASSES = ["background", "cat"]


def _rows(uris: list[str], *, minute: int = 0, etag: str = "e1", version: str = "v1", failed: tuple[str, ...] = (),
          cat_pixels: int = 3):
    """Statistics rows for ``uris`` (4 pixels each, ``cat_pixels`` of them cat), written at ``minute``."""
    count = len(uris)
    pixels = np.array([[4 - cat_pixels, cat_pixels]] * count)
    batch = {"uri": uris, "key": [uri.rsplit("/", 1)[-1] for uri in uris], "etag": [etag] * count,
             "size": [10] * count, "height": [2] * count, "width": [2] * count,
             "error": ["decode failed" if uri in failed else None for uri in uris],
             "pixels": pixels, "confidence_sum": pixels * 0.9}
    masks = [None if uri in failed else f"/out/masks/{uri.rsplit('/', 1)[-1]}.png" for uri in uris]
    when = datetime.datetime(2026, 11, 30, 3, minute, tzinfo=datetime.timezone.utc)
    return build_stats_table(batch, masks, CLASSES, Provenance("m.pt", version, "run"), when)


def _uris(start: int, stop: int) -> list[str]:
    return [f"s3://in/{index:03d}.jpg" for index in range(start, stop)]


@pytest.fixture(scope="module")
def ray_for_refs():
    """Skip sets travel as object references: a tiny Ray runtime to hold them (no tasks run here)."""
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    yield
    if started:
        ray.shutdown()


def test_the_committer_commits_in_batches_drops_a_batch_handed_over_twice_and_compacts(tmp_path):
    committer = StatsCommitter(str(tmp_path), CLASSES, partition=None, run_id="r1", commit_rows=10,
                               sample_rows=3)
    first = _rows(_uris(0, 6), failed=("s3://in/001.jpg",))
    assert committer.add(first) is True
    assert StatsTable.of(str(tmp_path)).open() is None  # 6 rows pending, below commit_rows
    assert committer.add(_rows(_uris(6, 12))) is True  # 12 pending: committed
    assert committer.add(first) is False  # a retried write task: dropped, not committed twice
    assert committer.add(_rows(_uris(12, 15))) is True
    result = committer.finish()

    rows = table_rows(str(tmp_path))
    assert sorted(row["image_uri"] for row in rows) == _uris(0, 15)
    assert (result.ok, result.error, result.commits) == (14, 1, 2)
    assert result.totals.class_pixels == {"background": 14, "cat": 42}
    assert [row["image_uri"] for row in result.sample] == ["s3://in/000.jpg", "s3://in/002.jpg",
                                                              "s3://in/003.jpg"]
    table = StatsTable.of(str(tmp_path)).open()
    assert [commit["operation"] for commit in table.history()][:1] == ["OPTIMIZE"]
    assert len(table.file_uris()) == 1  # two small commits became one file


def test_the_committer_tallies_what_the_model_stage_finished_ahead_of_the_rows(tmp_path):
    committer = StatsCommitter(str(tmp_path), CLASSES, partition=None, run_id="r1")
    committer.count_segmented(8, 1)
    committer.count_segmented(3, 0)
    assert committer.segmented() == (11, 1)
    assert StatsTable.of(str(tmp_path)).open() is None  # a tally, not rows: nothing is committed for it
    assert committer.finish().ok == 0


def test_the_committer_rates_the_model_stage_from_its_first_finished_batch_on(tmp_path):
    committer = StatsCommitter(str(tmp_path), CLASSES, partition=None, run_id="r1")
    assert committer.steady_rate() is None
    committer.count_segmented(8, 0)  # the first batch: after the start-up and the heap's growth, left out
    assert committer.steady_rate() is None
    started = time.monotonic()
    time.sleep(0.05)
    committer.count_segmented(3, 1)
    elapsed = time.monotonic() - started
    assert 3 / (elapsed + 0.05) < committer.finish().steady_rate <= 3 / 0.05


def test_the_committer_keeps_when_the_first_model_actor_was_ready(tmp_path):
    committer = StatsCommitter(str(tmp_path), CLASSES, partition=None, run_id="r1")
    assert committer.finish().model_ready_at is None
    before = time.time()
    committer.model_ready()
    first = committer.finish().model_ready_at
    committer.model_ready()  # a second actor, later: the run's start-up ended with the first
    assert before <= first <= time.time() and committer.finish().model_ready_at == first


def test_totals_count_each_image_once_as_its_latest_row(tmp_path):
    table = StatsTable.of(str(tmp_path))
    table.append(_rows(_uris(0, 4), minute=1, failed=("s3://in/000.jpg",)), partition=None, metadata={})
    table.append(_rows(_uris(0, 2), minute=5, etag="e2", cat_pixels=1), partition=None, metadata={})
    totals = table.scan_totals(CLASSES)
    # 000 failed, then succeeded with 1 cat pixel; 001 redone with 1; 002 and 003 as first written (3 each).
    assert (totals.ok, totals.error) == (4, 0)
    assert totals.class_pixels == {"background": 3 + 3 + 1 + 1, "cat": 1 + 1 + 3 + 3}
    assert StatsTable.of(str(tmp_path / "none")).scan_totals(CLASSES) == Totals()


def test_recorded_totals_hold_until_rows_change(tmp_path):
    table = StatsTable.of(str(tmp_path))
    assert table.read_totals() == Totals()  # no table: nothing recorded, and nothing to record
    table.append(_rows(_uris(0, 3)), partition=None, metadata={})
    assert table.read_totals() is None  # a table without recorded totals
    recorded = Totals(ok=3, error=0, class_pixels={"background": 3, "cat": 9})
    table.write_totals(recorded)
    assert table.read_totals() == recorded
    table.append(_rows(_uris(3, 4)), partition=None, metadata={})
    table.compact()
    assert table.read_totals() is None  # rows were added after the totals were recorded
    table.write_totals(table.scan_totals(CLASSES))
    table.compact()  # nothing to merge, or only a rewrite: rows stay as they are
    assert table.read_totals() == Totals(ok=4, error=0, class_pixels={"background": 4, "cat": 12})


_DAMAGED_TOTALS = {
    "null": b"null",
    "a list": b"[1, 2, 3]",
    "a string": b'"totals"',
    "empty object": b"{}",
    "truncated": b'{"table_id": "x", "table_version": 1, "ok": 3, "err',
    "not text": bytes(range(256)),
    "empty file": b"",
    "nested deeper than the parser goes": b"[" * 200_000 + b"]" * 200_000,
    "counts of the wrong type": b'{"table_id": "ID", "table_version": 0, "ok": "3", "error": 0, "class_pixels": {}}',
    "negative counts": b'{"table_id": "ID", "table_version": 0, "ok": -3, "error": 0, "class_pixels": {}}',
    "pixels not a mapping": b'{"table_id": "ID", "table_version": 0, "ok": 3, "error": 0, "class_pixels": [1]}',
    "version not a number": b'{"table_id": "ID", "table_version": true, "ok": 3, "error": 0, "class_pixels": {}}',
}


@pytest.mark.parametrize("damage", sorted(_DAMAGED_TOTALS))
def test_damaged_recorded_totals_are_counted_from_the_rows_with_one_warning(tmp_path, damage, caplog):
    table = StatsTable.of(str(tmp_path))
    table.append(_rows(_uris(0, 3)), partition=None, metadata={})
    table.write_totals(Totals(ok=3, error=0, class_pixels={"background": 3, "cat": 9}))
    table_id = table.open().metadata().id
    (tmp_path / "stats_totals.json").write_bytes(_DAMAGED_TOTALS[damage].replace(b'"ID"', f'"{table_id}"'.encode()))
    assert table.read_totals() is None  # so the run counts them from the rows, and records them anew
    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert len(warnings) == 1 and "stats_totals.json is damaged" in warnings[0]
    table.write_totals(table.scan_totals(CLASSES))
    assert table.read_totals() == Totals(ok=3, error=0, class_pixels={"background": 3, "cat": 9})


def test_rows_reads_one_partition_and_stops_at_the_limit(tmp_path):
    table = StatsTable.of(str(tmp_path))
    table.append(_rows(_uris(0, 5)), partition="date=2026-11-29", metadata={})
    table.append(_rows(_uris(5, 8), failed=("s3://in/006.jpg",)), partition="date=2026-11-30", metadata={})
    night = table.rows(["image_uri", "status"], partition="date=2026-11-30", where="status = 'ok'")
    assert sorted(night.column("image_uri").to_pylist()) == ["s3://in/005.jpg", "s3://in/007.jpg"]
    assert table.rows(["image_uri"], limit=2).num_rows == 2
    assert table.rows(["image_uri"], partition="day=1") is None
    with pytest.raises(StatsLayoutError, match="partitioned by date, but this run asks for no partition"):
        table.check_partitioning(None)
    table.check_partitioning("date=2026-12-01")


@pytest.mark.parametrize("policy, relabelled", [
    (SkipPolicy(), set()),
    (SkipPolicy(match_etag=True), {"s3://in/001.jpg"}),
    (SkipPolicy(match_model_version=True), {"s3://in/000.jpg", "s3://in/001.jpg", "s3://in/002.jpg"}),
])
def test_the_ledger_skips_what_is_done_under_each_policy(tmp_path, ray_for_refs, policy, relabelled):
    table = StatsTable.of(str(tmp_path))
    table.append(_rows(_uris(0, 3), etag="e1", version="v1"), partition=None, metadata={})
    done, seen = hash_ledger(table, policy)
    assert len(done) == 3 and np.all(np.diff(done.astype(np.float64)) > 0)
    assert (seen is None) == policy.uri_only
    skip = SkipSet(done=ray.put(done), seen=None if seen is None else ray.put(seen), rows=3)
    listed = pa.table({"uri": _uris(0, 4), "etag": ["e1", "e2", "e1", "e1"],  # 001 changed since, 003 is new
                       "key": ["000.jpg", "001.jpg", "002.jpg", "003.jpg"]})
    kept = drop_done(listed, skip=skip, policy=policy, model_version="v2").to_pylist()
    assert {row["uri"] for row in kept} == {"s3://in/003.jpg"} | relabelled
    assert {row["uri"] for row in kept if row["seen"]} == relabelled
    assert all(row["key"] == row["uri"].rsplit("/", 1)[-1] for row in kept)


def test_part_files_of_the_earlier_layout_become_the_table(tmp_path):
    stats = tmp_path / "stats"
    for night, uris in (("2026-11-20", _uris(0, 3)), ("2026-11-21", _uris(3, 5))):
        folder = stats / f"date={night}"
        os.makedirs(folder)
        for index, uri in enumerate(uris):  # one tiny part file per image, as a slow night wrote them
            pq.write_table(_rows([uri]).cast(stats_schema(CLASSES)), folder / f"part-{index}.parquet")
    table = StatsTable.of(str(tmp_path))
    assert table.holds_legacy_parts()
    table.convert_legacy_parts()
    assert not table.holds_legacy_parts()
    assert sorted((row["date"], row["image_uri"]) for row in table_rows(str(tmp_path))) == \
        [("2026-11-20", uri) for uri in _uris(0, 3)] + [("2026-11-21", uri) for uri in _uris(3, 5)]
    table.compact()
    assert len(table.open().file_uris()) == 2  # one file per night
    assert table.scan_totals(CLASSES).ok == 5


def test_a_commit_that_landed_although_it_failed_is_not_committed_again(tmp_path, monkeypatch):
    """A store outage can lose the answer to a commit that was written: the retry must not add its rows twice."""
    committer = StatsCommitter(str(tmp_path), CLASSES, partition=None, run_id="r1", commit_rows=4)
    real_append = StatsTable.append
    failures = iter([True])

    def append_then_lose_the_answer(self, rows, **kwargs):
        real_append(self, rows, **kwargs)
        if next(failures, False):
            raise ConnectionError("the answer was lost")

    monkeypatch.setattr(StatsTable, "append", append_then_lose_the_answer)
    with pytest.raises(ConnectionError):
        committer.add(_rows(_uris(0, 4)))  # committed, but the committer cannot know
    committer.add(_rows(_uris(4, 6)))  # below commit_rows: pending beside the uncertain batch
    committer.finish()
    assert sorted(row["image_uri"] for row in table_rows(str(tmp_path))) == _uris(0, 6)


def test_a_briefly_unreachable_store_is_ridden_out_by_the_committer(tmp_path, monkeypatch):
    """The first try lands but loses its answer, the second cannot reach the store, the third works: rows once."""
    committer = StatsCommitter(str(tmp_path), CLASSES, partition=None, run_id="r1", commit_rows=4)
    real_append = StatsTable.append
    outcomes = iter(["lands, answer lost", "unreachable"])

    def flaky_append(self, rows, **kwargs):
        outcome = next(outcomes, "works")
        if outcome != "unreachable":
            real_append(self, rows, **kwargs)
        if outcome != "works":
            raise StorageUnavailableError(f"could not reach the store while committing ({outcome})")

    monkeypatch.setattr(StatsTable, "append", flaky_append)
    assert committer.add(_rows(_uris(0, 4)))  # no error reaches the write stage
    committer.add(_rows(_uris(4, 8)))
    assert committer.finish().commits == 2
    assert sorted(row["image_uri"] for row in table_rows(str(tmp_path))) == _uris(0, 8)
