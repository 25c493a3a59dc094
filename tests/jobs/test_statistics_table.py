"""The statistics table as users meet it: the documented DuckDB call, outputs of the earlier layout, racing runs."""
from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import ray
from deltalake import DeltaTable

from jobs import segment_bucket
from pipelines.stats.keys import mask_key_for
from pipelines.stats.rows import Provenance, build_stats_table
from tests.fixtures.stats_table import s3_table_options, table_rows
from tests.reliability.buckets import put_objects, unique_bucket
from tests.reliability.hostile_corpus import tiny_jpeg

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def _docs_snippet() -> str:
    """The Python block of the "Opening the statistics" section of docs/statistics-table.md, as written."""
    page = (REPO / "docs" / "statistics-table.md").read_text()
    section = page[page.index("## Opening the statistics"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def _images(folder: Path, synthetic_corpus, count: int, start: int = 0) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for image_id in synthetic_corpus.train_ids[start:start + count]:
        shutil.copy(synthetic_corpus.root / "JPEGImages" / f"{image_id}.jpg", folder / f"{image_id}.jpg")
        names.append(f"{image_id}.jpg")
    return names


def test_the_documented_duckdb_call_opens_a_real_output(ray_local, synthetic_corpus, tiny_checkpoint, tmp_path):
    bucket, output = tmp_path / "bucket", tmp_path / "labels"
    names = _images(bucket, synthetic_corpus, 6)
    (bucket / "broken.jpg").write_bytes(b"not an image")
    argv = ["--input", str(bucket), "--output", str(output), "--model", tiny_checkpoint, "--no-tracking",
            "--stats-partition", "date=2026-11-30", "--max-error-fraction", "0.5"]
    assert segment_bucket.main(argv) == 0
    names += _images(bucket, synthetic_corpus, 2, start=6)  # the bucket grows; the next run compacts
    assert segment_bucket.main(argv) == 0

    namespace: dict = {}
    exec(_docs_snippet().replace("demo/segmented/stats", str(output / "stats")), namespace)  # noqa: S102
    counts = dict(namespace["stats"].aggregate("status, count(*) AS images").fetchall())
    assert counts == {"ok": len(names), "error": 1}
    frame, table = namespace["frame"], namespace["table"]
    assert len(frame) == table.num_rows == len(names) + 1
    assert set(frame["date"].astype(str)) == {"2026-11-30"}
    assert sorted(Path(uri).name for uri in table.column("image_uri").to_pylist()) == sorted([*names, "broken.jpg"])
    # Compaction left the replaced files on disk: the documented call does not read them, a glob would.
    files_on_disk = list((output / "stats").rglob("*.parquet"))
    assert len(files_on_disk) > len(DeltaTable(str(output / "stats")).file_uris())


def test_an_output_of_part_files_is_converted_once_and_its_images_are_skipped(ray_local, synthetic_corpus,
                                                                               tiny_checkpoint, tmp_path, capsys):
    bucket, output = tmp_path / "bucket", tmp_path / "labels"
    old = _images(bucket, synthetic_corpus, 4)
    classes = ["background", "disc", "square", "triangle", "ring", "bar"]
    # What the job wrote before the table: one Parquet part file per batch under stats/date=.../.
    for index, name in enumerate(old):
        batch = {"uri": [str(bucket / name)], "key": [name], "etag": ["old"], "size": [1], "height": [2],
                 "width": [2], "error": [None], "pixels": [[4, 0, 0, 0, 0, 0]], "confidence_sum": [[3.6] + [0] * 5]}
        mask = output / "masks" / mask_key_for(name)
        mask.parent.mkdir(parents=True, exist_ok=True)
        mask.write_bytes(b"")
        rows = build_stats_table(batch, [str(mask)], classes, Provenance("old.pt", "1", None),
                                 datetime.datetime(2026, 11, 1, tzinfo=datetime.timezone.utc))
        part = output / "stats" / "date=2026-11-01" / f"part-{index}.parquet"
        part.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(rows, part)
    new = _images(bucket, synthetic_corpus, 3, start=4)
    argv = ["--input", str(bucket), "--output", str(output), "--model", tiny_checkpoint, "--no-tracking",
            "--stats-partition", "date=2026-11-30"]

    assert segment_bucket.main(argv) == 0
    assert "converting the statistics part files" in capsys.readouterr().out
    rows = table_rows(str(output))
    assert sorted((row["date"], Path(row["image_uri"]).name) for row in rows) == \
        sorted([("2026-11-01", name) for name in old] + [("2026-11-30", name) for name in new])
    summary = json.loads((output / "summary.json").read_text())
    assert (summary["processed_this_run"], summary["images"]) == (len(new), len(old) + len(new))
    assert summary["class_pixels"]["background"] == 4 * len(old) + sum(
        row["pixels_background"] for row in rows if row["date"] == "2026-11-30")
    assert all((output / "stats" / "date=2026-11-01" / f"part-{index}.parquet").exists() for index in range(4))

    assert segment_bucket.main(argv) == 0  # converted once: the second run finds the table
    assert "converting" not in capsys.readouterr().out
    assert len(table_rows(str(output))) == len(old) + len(new)


@pytest.mark.parametrize("where", ["local", "s3"])
def test_two_runs_started_at_once_on_one_output_leave_exactly_one_writer(where, ray_local, s3_server,
                                                                         tiny_checkpoint, tmp_path):
    if where == "s3":
        bucket = unique_bucket(s3_server, "race")
        inputs = put_objects(s3_server, bucket, {f"in/{index:03d}.jpg": tiny_jpeg(index) for index in range(40)})
        source, output, options = f"s3://{bucket}/in", f"s3://{bucket}/out", s3_table_options(s3_server)
    else:
        folder = tmp_path / "in"
        folder.mkdir()
        for index in range(40):
            (folder / f"{index:03d}.jpg").write_bytes(tiny_jpeg(index))
        inputs = sorted(str(path) for path in folder.iterdir())
        source, output, options = str(folder), str(tmp_path / "out"), None
    command = [sys.executable, "jobs/segment_bucket.py", "--input", source, "--output", output, "--model",
               tiny_checkpoint, "--no-tracking", "--commit-rows", "8"]
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    runs = [subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    outcomes = [(run.wait(timeout=600), run.stderr.read()) for run in runs]

    codes = sorted(code for code, _ in outcomes)
    assert codes == [0, 2], outcomes
    refused = next(err for code, err in outcomes if code == 2)
    assert "is held by segment_bucket pid" in refused and "Traceback" not in refused
    rows = table_rows(output, options)
    assert sorted(row["image_uri"] for row in rows) == inputs  # every image once
    table = DeltaTable(f"{output}/stats", storage_options=options)
    writers = {commit.get("fcn_pipeline.writer") for commit in table.history() if commit["operation"] == "WRITE"}
    assert len(writers) == 1 and None not in writers


def test_reruns_of_a_manifest_on_the_machines_own_cpus(ray_local, synthetic_corpus, tiny_checkpoint, tmp_path):
    """The rerun's cluster-side steps (ledger hashing, filtering, the totals pass) on a Ray with this machine's
    real CPU count: the job's own private Ray, as a user's first try starts it (a test Ray with extra logical
    CPUs would hide a task waiting for a CPU that an actor holds).

    The first run, which has nothing to rerun yet, only makes the output the reruns start from: it runs in
    this process, on the tests' Ray, rather than paying for a private Ray of its own. (Its listing and
    filtering beside a model actor are what the second run does again on the private Ray.)
    """
    from pipelines.io.listing import iter_objects, write_manifest

    bucket, output, manifest = tmp_path / "bucket", tmp_path / "labels", tmp_path / "listing.parquet"
    _images(bucket, synthetic_corpus, 5)
    argv = ["--input", str(manifest), "--output", str(output), "--model", tiny_checkpoint, "--no-tracking",
            "--incremental"]
    env = {name: value for name, value in os.environ.items() if name != "RAY_ADDRESS"}

    def run(*, on_a_private_ray: bool = True) -> dict:
        write_manifest(str(manifest), iter_objects(str(bucket)))
        if on_a_private_ray:
            done = subprocess.run([sys.executable, "jobs/segment_bucket.py", *argv], cwd=REPO, env=env,
                                  capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, done.stderr[-3000:]
        else:
            assert segment_bucket.main(argv) == 0
        return json.loads((output / "summary.json").read_text())

    assert run(on_a_private_ray=False)["processed_this_run"] == 5
    _images(bucket, synthetic_corpus, 2, start=5)  # two new images
    first = synthetic_corpus.train_ids[0]
    shutil.copy(synthetic_corpus.root / "JPEGImages" / f"{synthetic_corpus.train_ids[9]}.jpg",
                bucket / f"{first}.jpg")  # and one changed: relabelled, so the totals are counted again
    summary = run()
    assert (summary["processed_this_run"], summary["images"], summary["ok"]) == (3, 7, 7)
    assert run()["processed_this_run"] == 0  # unchanged: nothing segmented
    assert len(table_rows(str(output))) == 8  # the changed image keeps its earlier row as history
