"""What does a nightly rerun cost once an output holds millions of images?

For each history size N (default 1M and 10M) this builds, without running inference:
  * a Parquet manifest of N objects (fake URIs: every one is already done, so none is fetched),
    and the same manifest plus 1,000 real synthetic JPEGs;
  * an output whose statistics table already records those N images, written directly in the
    job's real format (Delta table, the job's schema, recorded totals), in files of 1M rows.
Then it times, each as a fresh driver process on one shared local Ray cluster (as `ray job submit`
runs them), with the driver's peak RSS:
  (c) reading the manifest alone through the job's listing, in the blocks a rerun reads it in;
  (a) an unchanged nightly rerun (``--incremental``) of the N-object manifest;
  (b) the rerun of the manifest with 1,000 new images;
  (d) the same 1,000 images segmented into a fresh output: what segmenting them costs;
plus the end-of-run summary inside (a) and (b), and the one pass over the table that a run which
relabels images pays instead (``scan``).

Goals on the 2-core machine: (a) <= 2 x (c) + 10 s at 10M; (b) - (a) close to (d); driver peak RSS
at 10M <= 1.2 x at 1M and <= 2 GB; the summary <= 10 s at 10M.

    python -m benchmarks.ledger_scale                      # 1M and 10M (about 15 minutes, 3 GB of disk)
    python -m benchmarks.ledger_scale --sizes 100000       # a quick look
    python -m benchmarks.ledger_scale --tiny               # N = 1,000, 8 new images, no (d): what the test suite runs
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import tiny

ROWS_PER_FILE = 1_000_000


# --- building the history ------------------------------------------------------------------------


def _bulk_uris(start: int, stop: int):
    import pyarrow as pa
    import pyarrow.compute as pc

    numbers = pc.utf8_lpad(pc.cast(pa.array(range(start, stop), pa.int64()), pa.string()), 9, "0")
    return pc.binary_join_element_wise("/history/bucket/", numbers, ".jpg", "")


def write_manifest(path: Path, history: int, extra: list[str]) -> None:
    """A manifest of ``history`` fake objects (etag = their number) followed by the ``extra`` real files."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from pipelines.io.listing import MANIFEST_SCHEMA

    with pq.ParquetWriter(path, MANIFEST_SCHEMA, compression="zstd") as writer:
        for start in range(0, history, ROWS_PER_FILE):
            uris = _bulk_uris(start, min(start + ROWS_PER_FILE, history))
            writer.write_table(pa.table({"uri": uris, "key": pc.utf8_slice_codeunits(uris, 16),
                                         "size": pa.array([1000] * len(uris), pa.int64()),
                                         "etag": pc.utf8_slice_codeunits(uris, 16, 25)}, schema=MANIFEST_SCHEMA))
        if extra:
            writer.write_table(pa.table({"uri": extra, "key": [Path(uri).name for uri in extra],
                                         "size": [Path(uri).stat().st_size for uri in extra],
                                         "etag": [f"real-{Path(uri).stem}" for uri in extra]},
                                        schema=MANIFEST_SCHEMA))


def write_history(output: Path, history: int, class_names: list[str]) -> None:
    """The statistics table of an output that has segmented the ``history`` objects, with its recorded totals."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from pipelines.stats.keys import column_suffixes
    from pipelines.stats.rows import stats_schema
    from pipelines.stats.table import StatsTable, Totals

    table = StatsTable.of(str(output))
    schema = stats_schema(class_names)
    rng = np.random.default_rng(0)
    pixels_total = np.zeros(len(class_names), dtype=np.int64)
    for start in range(0, history, ROWS_PER_FILE):
        count = min(start + ROWS_PER_FILE, history) - start
        uris = _bulk_uris(start, start + count)
        pixels = rng.integers(0, 200_000, size=(count, len(class_names)), dtype=np.int64)
        pixels_total += pixels.sum(axis=0)
        area = pixels.sum(axis=1, keepdims=True)
        columns = {
            "image_uri": uris, "image_key": pc.utf8_slice_codeunits(uris, 16),
            "etag": pc.utf8_slice_codeunits(uris, 16, 25), "size_bytes": pa.array(np.full(count, 1000)),
            "mask_uri": pc.binary_join_element_wise(str(output / "masks") + "/", pc.utf8_slice_codeunits(uris, 16),
                                                    ".png", ""),
            "height": pa.array(np.full(count, 3024, dtype=np.int32)),
            "width": pa.array(np.full(count, 4032, dtype=np.int32)),
            "status": pa.array(["ok"] * count), "error": pa.nulls(count, pa.string()),
            "model": pa.array(["model.pt"] * count), "model_version": pa.array(["v1"] * count),
            "run_id": pa.nulls(count, pa.string()),
            "processed_at": pa.array(np.full(count, np.datetime64("2026-11-01T00:00:00", "ms")),
                                     pa.timestamp("ms", tz="UTC")),
            "mean_confidence": pa.array(rng.random(count, dtype=np.float32)),
            "novelty": pa.array(rng.random(count, dtype=np.float32) * 2),  # as a model with a novelty reference writes
        }
        for index, suffix in enumerate(column_suffixes(class_names)):
            columns[f"pixels_{suffix}"] = pa.array(pixels[:, index])
            columns[f"fraction_{suffix}"] = pa.array(pixels[:, index] / area[:, 0])
            columns[f"confidence_{suffix}"] = pa.array(rng.random(count, dtype=np.float32))
        table.append(pa.table(columns).cast(schema), partition=None, metadata={})
    table.write_totals(Totals(ok=history, error=0, class_pixels=dict(zip(class_names, map(int, pixels_total)))))


# --- one measurement, in a driver process of its own ---------------------------------------------


def _peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited from the parent across exec)."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def _child(kind: str, address: str, manifest: str, output: str, model: str) -> None:
    import ray

    from fcn_core.checkpoint import read_checkpoint_metadata
    from pipelines.io.corpus import list_corpus
    from pipelines.segmentation import run as segmentation
    from pipelines.segmentation.config import SegmentConfig
    from pipelines.stats.table import StatsTable

    ray.init(address=address, log_to_driver=False)
    timings: dict = {}
    started = time.perf_counter()
    if kind == "listing":
        timings["rows"] = list_corpus(manifest, rows_per_block=segmentation.LEDGER_ROWS_PER_BLOCK,
                                      regroup=False).count()
    elif kind == "scan":
        from pipelines.segmentation.run import _current_totals
        from pipelines.stats.committer import CommitReport

        _current_totals(StatsTable.of(output), None, CommitReport(), 0,
                        list(read_checkpoint_metadata(model).class_names))
    else:
        measured = segmentation._current_totals

        def timed_totals(*args, **kwargs):
            begun = time.perf_counter()
            try:
                return measured(*args, **kwargs)
            finally:
                timings["summary_s"] = time.perf_counter() - begun

        segmentation._current_totals = timed_totals
        config = SegmentConfig(input=manifest, output=output, model=model, tracking=False, previews=0,
                               incremental=True, batch_size=8)
        result = segmentation.run_segmentation(config, log=lambda message: None)
        timings["processed"] = result.summary.processed_this_run
        timings["images"] = result.summary.images
    timings["seconds"] = time.perf_counter() - started
    timings["peak_rss_mb"] = _peak_rss_mb()
    print(json.dumps(timings))


def _measure(kind: str, address: str, manifest: Path, output: Path, model: str) -> dict:
    command = [sys.executable, "-m", "benchmarks.ledger_scale", "--child", kind, address, str(manifest), str(output),
               model]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{kind} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- the benchmark -------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000], help="history sizes N")
    parser.add_argument("--new-images", type=int, default=1000, help="real images added to the history in (b)")
    parser.add_argument("--child", nargs=5, metavar=("KIND", "ADDRESS", "MANIFEST", "OUTPUT", "MODEL"),
                        help=argparse.SUPPRESS)
    args = tiny.parse_args(parser, argv, sizes=[1000], new_images=8)
    if args.child:
        _child(*args.child)
        return

    from benchmarks.common import corpus_and_checkpoint, local_ray
    from fcn_core.checkpoint import read_checkpoint_metadata

    results = []
    with local_ray(in_use=True) as address, tempfile.TemporaryDirectory(dir=Path.home()) as scratch:
        root = Path(scratch)
        images_dir, checkpoint = corpus_and_checkpoint(root / "new", images=args.new_images, size=96, width=0.125)
        class_names = list(read_checkpoint_metadata(checkpoint).class_names)
        new = sorted(str(path) for path in images_dir.glob("*.jpg"))
        fresh = root / "fresh.parquet"
        write_manifest(fresh, 0, new)
        # (d) runs the driver that (b) runs, on a fresh output: a check that the benchmark runs leaves it out.
        segmented = None if args.tiny else _measure("run", address, fresh, root / "fresh-output", checkpoint)
        for history in args.sizes:
            built = time.perf_counter()
            unchanged, grown, output = (root / f"unchanged-{history}.parquet", root / f"grown-{history}.parquet",
                                        root / f"output-{history}")
            write_manifest(unchanged, history, [])
            write_manifest(grown, history, new)
            write_history(output, history, class_names)
            print(f"N={history:,}: history and manifests built in {time.perf_counter() - built:.0f} s", flush=True)
            row = {"history": history,
                   "listing": _measure("listing", address, unchanged, output, checkpoint),
                   "unchanged": _measure("run", address, unchanged, output, checkpoint),
                   "grown": _measure("run", address, grown, output, checkpoint),
                   "scan": _measure("scan", address, unchanged, output, checkpoint)}
            results.append(row)
            print(json.dumps(row), flush=True)

    if segmented:
        print(f"\n(d) segmenting {args.new_images:,} images into a fresh output: {segmented['seconds']:.1f} s, "
              f"driver peak {segmented['peak_rss_mb']:.0f} MB")
    print(f"| history N | (c) listing s | (a) unchanged s | goal 2c+10 | (b) +{args.new_images:,} new s | (b)-(a) s | "
          "summary s (a) / (b) | full scan s | driver peak MB (c) / (a) / (b) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in results:
        c, a, b, scan = row["listing"], row["unchanged"], row["grown"], row["scan"]
        print(f"| {row['history']:,} | {c['seconds']:.1f} | {a['seconds']:.1f} | {2 * c['seconds'] + 10:.1f} | "
              f"{b['seconds']:.1f} ({b['processed']} new) | {b['seconds'] - a['seconds']:.1f} | "
              f"{a['summary_s']:.2f} / {b['summary_s']:.2f} | {scan['seconds']:.1f} | "
              f"{c['peak_rss_mb']:.0f} / {a['peak_rss_mb']:.0f} / {b['peak_rss_mb']:.0f} |")
    if len(results) > 1:
        first, last = results[0], results[-1]
        print(f"driver peak RSS of (a), {last['history']:,} / {first['history']:,}: "
              f"{last['unchanged']['peak_rss_mb'] / first['unchanged']['peak_rss_mb']:.2f} (goal <= 1.2)")


if __name__ == "__main__":
    main()
