"""Read throughput of the corpus layer against plain parallel GETs, and time to the first batch.

Starts its own SeaweedFS (``infra.local.seaweedfs.start_seaweedfs``) and a local Ray runtime,
uploads N small JPEGs, then in the same run:

* reads them through ``read_corpus`` (listing included) and through a plain thread pool of boto3
  GETs over the already-listed keys, alternating, and prints images/s, MB/s and their ratio
  (goal: corpus layer >= 0.9 of the plain GETs);
* times the first batch of ``read_corpus`` on a small prefix and on one 20x larger: listing runs
  inside Ray tasks while the first page is fetched, so it should not grow with the prefix.

Run from the repository root:

    python3 -m benchmarks.read_throughput --images 2000 --kib 64
    python3 -m benchmarks.read_throughput --tiny      # 32 + 20 + 40 small objects, 1 round: what the test suite runs
"""
from __future__ import annotations

import argparse
import io
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
from PIL import Image

from benchmarks import tiny
from infra.local.seaweedfs import SeaweedServer, start_seaweedfs

BUCKET = "bench"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2000, help="objects read in the throughput comparison")
    parser.add_argument("--kib", type=int, default=64, help="approximate size of each JPEG in KiB")
    parser.add_argument("--threads", type=int, default=16, help="threads of the plain GET baseline")
    parser.add_argument("--fetch-concurrency", type=int, default=16, help="parallel GETs per corpus fetch task")
    parser.add_argument("--rows-per-block", type=int, default=64, help="objects per corpus fetch task")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of each reader; the best is kept")
    parser.add_argument("--ttfb-images", type=int, default=1000,
                        help="objects in the small time-to-first-batch prefix (1000 = one full listing page)")
    parser.add_argument("--ttfb-kib", type=int, default=8, help="approximate size of the time-to-first-batch JPEGs")
    parser.add_argument("--ttfb-factor", type=int, default=20, help="how much larger the second prefix is")
    parser.add_argument("--cpus", type=int, default=max(8, os.cpu_count() or 1),
                        help="logical CPUs of the local Ray runtime (fetch tasks mostly wait on the network)")
    return tiny.parse_args(parser, argv, images=32, kib=4, rounds=1, ttfb_images=20, ttfb_kib=1, ttfb_factor=2)


def make_jpeg(kib: int) -> bytes:
    """A noise JPEG of roughly ``kib`` KiB (noise at quality 90 takes about a byte a pixel)."""
    side = max(8, int((kib * 1024 / 0.95) ** 0.5))
    pixels = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def upload(client, prefix: str, count: int, body: bytes) -> list[str]:
    keys = [f"{prefix}/{index // 1000:03d}/{index:07d}.jpg" for index in range(count)]
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda key: client.put_object(Bucket=BUCKET, Key=key, Body=body), keys))
    return keys


def read_plain(client, keys: list[str], threads: int) -> tuple[int, int, float]:
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        sizes = list(pool.map(lambda key: len(client.get_object(Bucket=BUCKET, Key=key)["Body"].read()), keys))
    return len(sizes), sum(sizes), time.perf_counter() - started


def read_through_corpus(uri: str, args: argparse.Namespace) -> tuple[int, int, float]:
    from pipelines.io.corpus import read_corpus

    started = time.perf_counter()
    dataset = read_corpus(uri, fetch_concurrency=args.fetch_concurrency, rows_per_block=args.rows_per_block)
    images = total = 0
    for batch in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
        images += batch.num_rows
        total += pc.sum(pc.binary_length(batch.column("bytes"))).as_py() or 0
    return images, total, time.perf_counter() - started


def time_to_first_batch(uri: str, args: argparse.Namespace) -> float:
    """Seconds from the ``read_corpus`` call to its first batch; the run is then read to the end.

    (Abandoning a run makes Ray Data cancel its tasks, killing their worker processes, so the next
    run would pay for starting new ones.)
    """
    from pipelines.io.corpus import read_corpus

    started = time.perf_counter()
    batches = iter(read_corpus(uri, fetch_concurrency=args.fetch_concurrency,
                               rows_per_block=args.rows_per_block).iter_batches(batch_size=None))
    next(batches)
    elapsed = time.perf_counter() - started
    for _ in batches:
        pass
    return elapsed


def report(name: str, images: int, total: int, seconds: float) -> float:
    rate = images / seconds
    print(f"  {name:<28} {images:>6} images in {seconds:6.2f} s: {rate:8.1f} images/s, "
          f"{total / seconds / 1e6:7.1f} MB/s")
    return rate


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="read-throughput-"))
    server = start_seaweedfs(workdir)
    try:
        os.environ.update(server.env())
        import ray

        ray.init(address="local", num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
        measure(server, args)
    finally:
        server.stop()


def measure(server: SeaweedServer, args: argparse.Namespace) -> None:
    """Upload, read and print, on a Ray runtime whose workers reach ``server`` (its variables in their environment).

    The test suite runs it at ``--tiny`` on the S3 server and the Ray of its session, which are set up so.
    """
    client = server.client()
    server.create_bucket(BUCKET)
    body, small_body = make_jpeg(args.kib), make_jpeg(args.ttfb_kib)
    small = args.ttfb_images
    print(f"uploading {args.images} JPEGs of {len(body) / 1024:.0f} KiB and {small} + {small * args.ttfb_factor} "
          f"of {len(small_body) / 1024:.0f} KiB to {server.endpoint_url} ...")
    keys = upload(client, "throughput", args.images, body)
    upload(client, "ttfb-small", small, small_body)
    upload(client, "ttfb-large", small * args.ttfb_factor, small_body)

    read_through_corpus(f"s3://{BUCKET}/ttfb-small", args)  # warm-up: Ray workers, imports, connections
    print(f"throughput, {args.images} objects, best of {args.rounds} alternating rounds "
          f"(corpus layer includes listing; plain GETs get the keys for free):")
    corpus_runs, plain_runs = [], []
    for _ in range(args.rounds):
        plain_runs.append(read_plain(client, keys, args.threads))
        corpus_runs.append(read_through_corpus(f"s3://{BUCKET}/throughput", args))
    plain = report(f"plain boto3, {args.threads} threads", *min(plain_runs, key=lambda run: run[2]))
    corpus = report("corpus layer (read_corpus)", *min(corpus_runs, key=lambda run: run[2]))
    print(f"  ratio corpus / plain: {corpus / plain:.2f} (goal >= 0.90)")

    print("time to first batch, median of 3 alternating runs:")
    prefixes = {small: f"s3://{BUCKET}/ttfb-small", small * args.ttfb_factor: f"s3://{BUCKET}/ttfb-large"}
    runs = {count: [] for count in prefixes}
    for _ in range(3):
        for count, uri in prefixes.items():
            runs[count].append(time_to_first_batch(uri, args))
    for count, seconds in runs.items():
        print(f"  {count:>7} objects: {statistics.median(seconds):6.2f} s "
              f"(runs: {', '.join(f'{value:.2f}' for value in seconds)})")


if __name__ == "__main__":
    main()
