"""What camera-sized photographs cost segment_bucket beyond the model itself.

The corpus is made from real photographs: scikit-image's bundled samples (astronaut, coffee, chelsea,
rocket, retina, hubble_deep_field, immunohistochemistry), each resized (Lanczos) so its short side is
1008 px, centre-cropped to 1008 x 1008 and tiled into a camera-sized frame; Gaussian noise of
sigma 3 stands in for a sensor's, so the JPEGs (quality 90, 4:2:0) carry a camera photo's detail.
Four kinds: 12 MP landscape (4032 x 3024), 12 MP portrait (stored landscape with EXIF orientation 6,
as phones write it), 24 MP (6000 x 4000) and 2 MP (1920 x 1080).

For each kind, the CPU-ms (process time, one torch thread, median of ``--repeats``) of the three
CPU stages as the job runs them: decode (`decode_for_inference` at ``--max-side``), post-process
(`predict_mask`, and its exact path: what the job did before) and encode (`encode_mask_png`); and
how the default post-process agrees with the exact one on that photo's logits: share of equal
pixels, whether pixel counts sum to H x W, and the largest per-class difference of mean confidence.

Then for each model, the job itself (``run_segmentation`` on ``--copies`` of each kind, on a fresh local
Ray, as `benchmarks.segment_throughput` does) against the model's pure forward on the same prepared
images (same shapes and batches, every core, measured before and after each round): images/s of each and
their ratio, median over rounds; and the same ratio for the job's steady rate (the
``steady_images_per_second`` of its summary: from the model stage's first finished batch to its last,
as the pure forward leaves out its model's load and a warm-up pass): what a run over a whole bucket
approaches, its start-up spread thin. Models: (i) the default
FCN-8s of ``jobs/train_fcn.py`` (width 1/8, 6 classes) and (ii) the paper-size one (width 1, 21
classes), both untrained (no pretrained weights here) with score layers drawn from N(0, 3) so that their
masks use several classes and their confidences are a trained model's (mean max-softmax ~0.8). Goals on
the 2-core machine: decode + post-process + encode <= 150 CPU-ms per 12 MP photo; job / pure forward >=
0.9 with the paper-size model.

    pip install scikit-image   # the sample photographs
    python -m benchmarks.photo_throughput                              # ~20 minutes on 2 cores
    python -m benchmarks.photo_throughput --copies 1 --rounds 1 --paper-rounds 0   # a quicker look
    python -m benchmarks.photo_throughput --tiny   # photos at 1/8 side from matplotlib's one, the default model,
                                                   # 1 round: what the test suite runs (no scikit-image needed)
"""
from __future__ import annotations

import argparse
import io
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmarks import tiny
from benchmarks.common import grace_hopper, local_ray, segment
from benchmarks.segment_throughput import pure_forward
from fcn_core.checkpoint import load_checkpoint, save_checkpoint
from fcn_core.masks import encode_mask_png
from fcn_core.models import build_model
from fcn_core.postprocess import predict_mask
from pipelines.io.decode import decode_for_inference
from pipelines.runtime.cpu_allocator import reuse_freed_memory
from pipelines.runtime.inference import group_by_shape

SAMPLES = ("astronaut", "coffee", "chelsea", "rocket", "retina", "hubble_deep_field", "immunohistochemistry")
TILE = 1008
KINDS = {  # name -> (stored height, stored width, EXIF orientation)
    "12MP landscape": (3024, 4032, None),
    "12MP portrait (EXIF 6)": (3024, 4032, 6),
    "24MP": (4000, 6000, None),
    "2MP": (1080, 1920, None),
}
MODELS = {  # name -> (classes, width multiplier)
    "default FCN-8s (width 1/8, 6 classes)": (6, 0.125),
    "paper-size FCN-8s (width 1, 21 classes)": (21, 1.0),
}
SCORE_STD = 3.0
TINY_SCALE = 8  # --tiny: each kind at 1/8 of its height and width


def sample_photographs(*, matplotlib_only: bool) -> list[np.ndarray]:
    """scikit-image's samples, RGB uint8 (H, W, 3); with ``matplotlib_only``, its one photo (no scikit-image needed)."""
    if matplotlib_only:
        return [grace_hopper()]
    import skimage.data

    return [getattr(skimage.data, name)()[..., :3] for name in SAMPLES]


def camera_photo(height: int, width: int, seed: int, samples: list[np.ndarray]) -> np.ndarray:
    """RGB uint8 (H, W, 3): tiles of the ``samples`` photographs, with sensor-like noise."""
    rng = np.random.default_rng(seed)
    frame = np.empty((height, width, 3), dtype=np.uint8)
    corners = [(top, left) for top in range(0, height, TILE) for left in range(0, width, TILE)]
    for index, (top, left) in enumerate(corners):
        sample = samples[(index + seed) % len(samples)]
        scale = TILE / min(sample.shape[:2])
        resized = np.asarray(Image.fromarray(sample).resize(
            (max(TILE, round(sample.shape[1] * scale)), max(TILE, round(sample.shape[0] * scale))),
            Image.Resampling.LANCZOS))
        y, x = (resized.shape[0] - TILE) // 2, (resized.shape[1] - TILE) // 2
        tile = resized[y : y + TILE, x : x + TILE]
        frame[top : top + TILE, left : left + TILE] = tile[: height - top, : width - left]
    return np.clip(frame + rng.normal(0, 3, frame.shape), 0, 255).astype(np.uint8)


def build_corpus(kinds: dict[str, tuple[int, int, int | None]], samples: list[np.ndarray]) -> dict[str, bytes]:
    """One JPEG per kind, as a camera writes it, by kind."""
    corpus = {}
    for seed, (kind, (height, width, orientation)) in enumerate(kinds.items()):
        options = {"quality": 90}
        if orientation is not None:
            exif = Image.Exif()
            exif[0x0112] = orientation
            options["exif"] = exif.tobytes()
        buffer = io.BytesIO()
        Image.fromarray(camera_photo(height, width, seed, samples)).save(buffer, format="JPEG", **options)
        corpus[kind] = buffer.getvalue()
    return corpus


def write_checkpoint(path: Path, num_classes: int, width: float) -> str:
    torch.manual_seed(0)
    model = build_model("fcn8s", num_classes, width_multiplier=width, alignment="compact")
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.split(".")[0].startswith("score"):
                parameter.normal_(0, SCORE_STD)
    save_checkpoint(str(path), model, class_names=[f"class{index:02d}" for index in range(num_classes)])
    return str(path)


def cpu_ms(repeats: int, function, *args, **kwargs) -> tuple[float, object]:
    """Median process CPU time of ``function(*args, **kwargs)`` in ms, and its last result."""
    times, result = [], None
    for _ in range(repeats):
        started = time.process_time()
        result = function(*args, **kwargs)
        times.append((time.process_time() - started) * 1000)
    return statistics.median(times), result


def stage_costs(corpus: dict[str, bytes], model, normalization, max_side: int, repeats: int) -> list[dict]:
    """Per kind: CPU-ms of decode, post-process (default and exact), encode; agreement of the two paths."""
    from fcn_core.normalization import normalize_image

    rows = []
    for kind, data in corpus.items():
        decode_ms, decoded = cpu_ms(repeats, decode_for_inference, data, max_side=max_side)
        size = (decoded.height, decoded.width)
        with torch.inference_mode():
            torch.set_num_threads(os.cpu_count() or 1)
            logits = model(normalize_image(decoded.pixels, normalization))[0]
            torch.set_num_threads(1)  # CPU-ms of the post-process: one thread, as in a CPU actor's share
            post_ms, fast = cpu_ms(repeats, predict_mask, logits, size)
            exact_ms, exact = cpu_ms(1, predict_mask, logits, size, exact=True)
        encode_ms, png = cpu_ms(repeats, encode_mask_png, fast.mask)
        present = exact.pixels > 0
        confidence_error = np.abs(fast.confidence_sum[present] / np.maximum(fast.pixels[present], 1)
                                  - exact.confidence_sum[present] / exact.pixels[present]).max()
        rows.append({"kind": kind, "megabytes": len(data) / 1e6, "size": size, "inference": decoded.pixels.shape[:2],
                     "decode": decode_ms, "post": post_ms, "exact": exact_ms, "encode": encode_ms,
                     "png_kb": len(png) / 1e3, "agreement": float((fast.mask == exact.mask).mean()),
                     "sums": int(fast.pixels.sum()) == size[0] * size[1], "confidence": float(confidence_error),
                     "mean_confidence": exact.mean_confidence})
    return rows


def print_stage_costs(rows: list[dict]) -> None:
    print(f"{'photo':<24} {'JPEG MB':>7} {'inference':>10} {'decode':>7} {'post':>6} {'encode':>7} {'total':>6} "
          f"{'exact post':>10}  {'agree %':>8} {'sums':>4} {'max dconf':>9}  (CPU-ms)")
    for row in rows:
        total = row["decode"] + row["post"] + row["encode"]
        print(f"{row['kind']:<24} {row['megabytes']:7.1f} {'x'.join(map(str, row['inference'])):>10} "
              f"{row['decode']:7.0f} {row['post']:6.0f} {row['encode']:7.0f} {total:6.0f} {row['exact']:10.0f}  "
              f"{100 * row['agreement']:8.4f} {'ok' if row['sums'] else 'NO':>4} {row['confidence']:9.5f}")


def forward_rate(model, images: list[np.ndarray], normalization, batch_size: int) -> float:
    """Pure forward images/s over images of mixed shapes, batched as the job batches them.

    Copies of one photo cost the same: each shape's rate comes from one full batch of its images
    (the paper-size model needs ~30 s a batch here), and the whole from the count of each shape.
    """
    seconds = 0.0
    for group in group_by_shape(images):
        same = [images[index] for index in group]
        seconds += len(same) / pure_forward(model, same[:batch_size], normalization, batch_size)
    return len(images) / seconds


def job_against_forward(corpus: dict[str, bytes], root: Path, checkpoint: str, *, copies: int, rounds: int,
                        max_side: int, batch_size: int) -> list[tuple[float, float, float, float]]:
    """Per round: (job images/s, its steady images/s, start-up seconds, mean of the bracketing pure-forward
    images/s)."""
    folder = root / "photos"
    folder.mkdir(parents=True)
    for index, data in enumerate(corpus.values()):
        for copy in range(copies):
            (folder / f"kind{index}-copy{copy}.jpg").write_bytes(data)
    images = [decode_for_inference(data, max_side=max_side).pixels for data in corpus.values() for _ in range(copies)]
    loaded = load_checkpoint(checkpoint)
    model, normalization = loaded.model.eval(), loaded.normalization
    forward = forward_rate(model, images, normalization, batch_size)
    results = []
    for round_number in range(rounds):
        with local_ray(in_use=True):
            summary, seconds = segment(folder, checkpoint, root / f"job-{round_number}", batch_size=batch_size,
                                       max_side=max_side)
        assert summary["ok"] == summary["processed_this_run"] == len(images), summary
        after = forward_rate(model, images, normalization, batch_size)
        results.append((len(images) / seconds, summary["steady_images_per_second"], summary["startup_seconds"],
                        (forward + after) / 2))
        forward = after
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-side", type=int, default=1024, help="the job's --max-side")
    parser.add_argument("--repeats", type=int, default=5, help="timings per stage (median)")
    parser.add_argument("--copies", type=int, default=12, help="copies of each kind in the job's corpus")
    parser.add_argument("--rounds", type=int, default=3, help="job runs with the default model")
    parser.add_argument("--paper-rounds", type=int, default=1,
                        help="job runs with the paper-size model (each takes minutes on 2 cores)")
    parser.add_argument("--batch-size", type=int, default=8)
    args = tiny.parse_args(parser, argv, max_side=256, repeats=1, copies=1, rounds=1, batch_size=2)
    kinds = KINDS
    models = list(zip(MODELS.items(), (args.rounds, args.paper_rounds)))
    if args.tiny:  # the paper-size model's forward pass alone takes seconds
        kinds = {kind: (height // TINY_SCALE, width // TINY_SCALE, orientation)
                 for kind, (height, width, orientation) in KINDS.items()}
        models = models[:1]

    reuse_freed_memory()
    with tempfile.TemporaryDirectory(prefix="photo-throughput-") as scratch:
        root = Path(scratch)
        corpus = build_corpus(kinds, sample_photographs(matplotlib_only=args.tiny))
        for (name, (num_classes, width)), rounds in models:
            checkpoint = write_checkpoint(root / f"model-{num_classes}.pt", num_classes, width)
            loaded = load_checkpoint(checkpoint)
            rows = stage_costs(corpus, loaded.model.eval(), loaded.normalization, args.max_side, args.repeats)
            print(f"\n{name}: mean confidence {statistics.mean(row['mean_confidence'] for row in rows):.2f}, "
                  f"--max-side {args.max_side}")
            print_stage_costs(rows)
            if not rounds:
                continue
            torch.set_num_threads(os.cpu_count() or 1)
            results = job_against_forward(corpus, root / f"run-{num_classes}", checkpoint, copies=args.copies,
                                          rounds=rounds, max_side=args.max_side, batch_size=args.batch_size)
            for job, steady, startup, forward in results:
                print(f"job {job:.3f} images/s (start-up {startup:.1f} s; steady {steady:.3f} images/s), "
                      f"pure forward {forward:.3f} images/s: job / forward {job / forward:.3f}, "
                      f"steady {steady / forward:.3f}")
            print(f"job / forward median {statistics.median(job / forward for job, _, _, forward in results):.3f}, "
                  f"steady {statistics.median(steady / forward for _, steady, _, forward in results):.3f}, "
                  f"over {len(results)} round(s) of {args.copies * len(corpus)} photos")


if __name__ == "__main__":
    main()
