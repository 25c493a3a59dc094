"""segment_bucket on a folder of camera-like photos of mixed sizes (real Ray, local folders).

JPEGs larger than ``--max-side`` are decoded at a reduced DCT scale, one just short of a scale (as
12 MP phone photos are at the default size) is decoded at it and enlarged, a portrait carries an
EXIF rotation, a PNG is below ``--max-side`` and one image is a pixel wide. Each must come out as a
mask of the size a viewer shows, whose pixel counts add up, and which agrees with the exact
post-process (every class resampled at every pixel) on the same prepared image.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fcn_core.masks import decode_mask_png
from fcn_core.postprocess import predict_mask
from jobs import segment_bucket
from pipelines.io import storage
from pipelines.runtime.inference import DeviceModel
from pipelines.segmentation.prepare import prepare_images
from tests.fixtures.stats_table import table_rows

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MAX_SIDE = 160
MAX_PIXELS = 4_000_000


def photo(height: int, width: int, seed: int) -> np.ndarray:
    """RGB uint8 (H, W, 3): colour blocks of 24 pixels over a gradient, so the model sees regions."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (height // 24 + 1, width // 24 + 1, 3))
    y, x = np.mgrid[0:height, 0:width]
    gradient = np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), (x + y) % 256], axis=-1)
    regions = np.repeat(np.repeat(blocks, 24, axis=0), 24, axis=1)[:height, :width]
    return ((regions + gradient) // 2).astype(np.uint8)


def encoded(pixels: np.ndarray, fmt: str, orientation: int | None = None) -> bytes:
    options = {"quality": 90} if fmt == "JPEG" else {}
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        options["exif"] = exif.tobytes()
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt, **options)
    return buffer.getvalue()


# name -> (bytes, (H, W) as a viewer shows it)
PHOTOS = {
    "landscape.jpg": (encoded(photo(720, 960, 1), "JPEG"), (720, 960)),  # 6x --max-side: 1/4 scale
    "portrait-exif6.jpg": (encoded(photo(720, 960, 2), "JPEG", orientation=6), (960, 720)),  # stored sideways
    "phone-ratio.jpg": (encoded(photo(474, 632, 3), "JPEG"), (474, 632)),  # 3.95x: 1/4 scale, then enlarged
    "large.jpg": (encoded(photo(1200, 1600, 4), "JPEG"), (1200, 1600)),  # 10x: 1/8 scale
    "small.png": (encoded(photo(90, 120, 5), "PNG"), (90, 120)),  # below --max-side: as it is
    "one-pixel-wide.png": (encoded(photo(40, 1, 6), "PNG"), (40, 1)),
}


def exact_prediction(checkpoint: str, data: bytes):
    """What the exact post-process gives for one file, after the job's own decoding and model."""
    batch = {"uri": np.array(["x"], dtype=object), "key": np.array(["x"], dtype=object),
             "etag": np.array([""], dtype=object), "size": np.array([len(data)]),
             "bytes": np.array([data], dtype=object)}
    prepared = prepare_images(batch, max_side=MAX_SIDE, max_pixels=MAX_PIXELS)
    model = DeviceModel(Path(checkpoint).read_bytes(), use_gpu=False, threads=1)
    with torch.inference_mode():
        logits = model.logits([prepared["image"][0]])[0]
    return predict_mask(logits, (int(prepared["height"][0]), int(prepared["width"][0])), exact=True)


def test_mixed_photos_get_full_size_masks_that_match_the_exact_post_process(ray_local, tmp_path, tiny_checkpoint):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name, (data, _) in PHOTOS.items():
        (photos / name).write_bytes(data)
    output = tmp_path / "out"
    code = segment_bucket.main(["--input", str(photos), "--output", str(output), "--model", tiny_checkpoint,
                                "--max-side", str(MAX_SIDE), "--max-pixels", str(MAX_PIXELS), "--batch-size", "2",
                                "--no-tracking"])
    assert code == 0

    rows = {Path(row["image_key"]).name: row for row in table_rows(str(output))}
    assert set(rows) == set(PHOTOS)
    suffixes = [name.removeprefix("pixels_") for name in rows["small.png"] if name.startswith("pixels_")]
    for name, (data, shape) in PHOTOS.items():
        row = rows[name]
        assert row["status"] == "ok", (name, row["error"])
        mask = decode_mask_png(storage.read_bytes(row["mask_uri"]))
        assert mask.shape == (row["height"], row["width"]) == shape, name
        counts = [row[f"pixels_{suffix}"] for suffix in suffixes]
        assert sum(counts) == mask.size and counts == np.bincount(mask.ravel(), minlength=len(counts)).tolist()

        exact = exact_prediction(tiny_checkpoint, data)
        assert (mask == exact.mask).mean() >= 0.999, name
        for index, suffix in enumerate(suffixes):
            if exact.pixels[index] and counts[index]:
                exact_mean = exact.confidence_sum[index] / exact.pixels[index]
                assert row[f"confidence_{suffix}"] == pytest.approx(exact_mean, abs=0.01), (name, suffix)
