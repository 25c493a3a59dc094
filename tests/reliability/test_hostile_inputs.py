"""Hostile and odd inputs through the whole segment_bucket job (real Ray, the real S3 server).

Every odd file of ``hostile_corpus.odd_files`` must end as exactly one row: ``ok`` with the mask the
model gives for the image as a viewer shows it, or ``error`` with a reason. Whatever the input key,
nothing is written outside the output prefix, and the exit code follows ``--max-error-fraction``.
The decoder and the key mapping have their own property-based tests
(``tests/pipelines/io/test_decode.py``, ``tests/pipelines/stats/test_keys.py``).
"""
from __future__ import annotations

import io
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray
from fsspec.implementations.local import LocalFileSystem
from PIL import Image

from fcn_core.masks import decode_mask_png
from jobs import segment_bucket
from pipelines.io.listing import MANIFEST_SCHEMA
from pipelines.segmentation.prepare import prepare_images
from pipelines.segmentation.stages import SegmentImages
from tests.reliability.audit import audit_output
from tests.reliability.buckets import put_objects, unique_bucket
from tests.reliability.hostile_corpus import (
    MAX_PIXELS,
    odd_files,
    tiny_jpeg,
    traversal_keys,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MAX_SIDE = 256  # small, so that the large photo is segmented downscaled, as in production


def reference_masks(checkpoint: str, files: dict[str, bytes]) -> dict[str, np.ndarray]:
    """The masks the job's own stages give each image when called here, in this process, one at a time."""
    with open(checkpoint, "rb") as handle:
        segment = SegmentImages([ray.put(handle.read())], use_gpu=False, threads=1)
    masks = {}
    for key, data in files.items():
        batch = {"uri": np.array([key], dtype=object), "key": np.array([key], dtype=object),
                 "etag": np.array([""], dtype=object), "size": np.array([len(data)]),
                 "bytes": np.array([data], dtype=object)}
        png = segment(prepare_images(batch, max_side=MAX_SIDE, max_pixels=MAX_PIXELS))["mask_png"][0]
        masks[key] = decode_mask_png(png)
    return masks


def test_every_odd_file_ends_as_a_correct_mask_or_an_error_row(ray_local, s3_server, s3_files, tiny_checkpoint,
                                                               fault_report):
    bucket = unique_bucket(s3_server, "hostile")
    odd = {f"in/{item.key}": item for item in odd_files()}
    inputs = put_objects(s3_server, bucket, {key: item.data for key, item in odd.items()})
    code = segment_bucket.main(["--input", f"s3://{bucket}/in", "--output", f"s3://{bucket}/run", "--model",
                                tiny_checkpoint, "--batch-size", "2", "--max-side", str(MAX_SIDE),
                                "--max-pixels", str(MAX_PIXELS), "--max-error-fraction", "1", "--no-tracking"])
    # Everything in the bucket but the inputs must be under run/.
    audit = audit_output(s3_files, f"{bucket}/run", inputs, scope=bucket,
                         preexisting=frozenset(f"{bucket}/{key}" for key in odd))

    rows = {row["image_uri"].removeprefix(f"s3://{bucket}/"): row for row in audit.rows}
    references = reference_masks(tiny_checkpoint, {key: item.data for key, item in odd.items() if item.shape})
    wrong = []
    for key, item in odd.items():
        row = rows.get(key)
        if row is None:
            wrong.append(f"{key} ({item.kind}): no row, the file was skipped silently")
        elif item.shape is None and not (row["status"] == "error" and (row["error"] or "").startswith(item.reason)):
            wrong.append(f"{key} ({item.kind}): expected an error starting {item.reason!r}, got {row['status']} "
                         f"{row['error']!r}")
        elif item.shape is not None and row["status"] != "ok":
            wrong.append(f"{key} ({item.kind}): expected a mask, got error {row['error']!r}")
        elif item.shape is not None:
            mask = decode_mask_png(s3_files.cat(row["mask_uri"].removeprefix("s3://")))
            if mask.shape != item.shape or not np.array_equal(mask, references[key]):
                wrong.append(f"{key} ({item.kind}): mask {mask.shape} differs from the model's {item.shape} mask")

    fault_report("input", f"{len(odd)} odd files: " + ", ".join(item.kind for item in odd.values()), audit,
                 exit_codes=[code], detail=f"files without a correct mask or error row: {len(wrong)}")
    assert code == 0
    assert not wrong, "\n".join(wrong)
    assert not audit.problems(), audit.problems()


def test_the_exit_code_follows_max_error_fraction(ray_local, tmp_path, tiny_checkpoint, capsys):
    images = tmp_path / "images"
    images.mkdir()
    for index in range(3):
        (images / f"good-{index}.jpg").write_bytes(tiny_jpeg(index))
    (images / "empty.jpg").write_bytes(b"")
    argv = ["--input", str(images), "--output", str(tmp_path / "output"), "--model", tiny_checkpoint, "--no-tracking"]
    summary = tmp_path / "output" / "summary.json"

    assert segment_bucket.main([*argv, "--max-error-fraction", "0.25"]) == 0  # 1 of 4 failed: at the limit
    assert summary.exists()
    capsys.readouterr()
    # The same output judged again (every image is done): over the limit now, so no summary.
    assert segment_bucket.main([*argv, "--max-error-fraction", "0.2"]) == 2
    assert "1 of 4 images failed" in capsys.readouterr().err
    assert not summary.exists()


def test_hostile_keys_from_a_manifest_never_leave_the_output_prefix(ray_local, tmp_path, tiny_checkpoint,
                                                                   fault_report):
    """Keys with ``..``, absolute and empty segments cannot be stored on SeaweedFS; a manifest can carry them."""
    images = tmp_path / "images"
    images.mkdir()
    rows = []
    for index, key in enumerate(traversal_keys()):
        path = images / f"{index}.jpg"
        path.write_bytes(tiny_jpeg(index))
        rows.append({"uri": str(path), "key": key, "size": path.stat().st_size, "etag": f"e{index}"})
    manifest = tmp_path / "manifest.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA), manifest)
    output = tmp_path / "deep" / "er" / "output"  # room above it for `..` to climb into, inside tmp_path
    local = LocalFileSystem()
    before = frozenset(local.find(str(tmp_path)))

    code = segment_bucket.main(["--input", str(manifest), "--output", str(output), "--model", tiny_checkpoint,
                                "--max-error-fraction", "0", "--no-tracking"])
    audit = audit_output(local, str(output), [row["uri"] for row in rows], scope=str(tmp_path), preexisting=before)

    fault_report("input", f"{len(rows)} keys with '..', '.', absolute and empty segments (via a manifest)", audit,
                 exit_codes=[code], detail=f"files written outside the output prefix: {len(audit.escaped)}")
    assert code == 0
    assert not audit.problems(), audit.problems()
    masks_root = os.path.realpath(output / "masks") + os.sep
    assert all(os.path.realpath(row["mask_uri"]).startswith(masks_root) for row in audit.rows)


def test_images_that_differ_only_in_extension_get_a_mask_each(ray_local, tmp_path, tiny_checkpoint, fault_report):
    """``photo.jpg`` next to ``photo.png`` is common in real buckets; each needs its own mask."""
    images = tmp_path / "images"
    images.mkdir()
    (images / "photo.jpg").write_bytes(tiny_jpeg(1, size=(24, 32)))
    buffer = io.BytesIO()
    Image.new("RGB", (22, 18), (10, 200, 30)).save(buffer, format="PNG")
    (images / "photo.png").write_bytes(buffer.getvalue())
    output = tmp_path / "output"

    code = segment_bucket.main(["--input", str(images), "--output", str(output), "--model", tiny_checkpoint,
                                "--max-error-fraction", "0", "--no-tracking"])
    audit = audit_output(LocalFileSystem(), str(output), [str(images / "photo.jpg"), str(images / "photo.png")])

    fault_report("input", "photo.jpg and photo.png side by side", audit, exit_codes=[code],
                 detail=f"masks claimed by two images: {len(audit.shared_masks)}")
    assert code == 0
    assert not audit.problems(), audit.problems()
