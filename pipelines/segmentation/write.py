"""The last stage of batch segmentation: write each batch's masks, then hand its rows to the committer.

Free of torch, like ``pipelines.segmentation.prepare``: its actors start while the model actor is
still loading, and a torch import would take CPU from exactly that.
"""
from __future__ import annotations

import datetime
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from pipelines.io import storage
from pipelines.runtime.batches import is_error
from pipelines.stats.keys import MASKS_DIR, mask_key_for
from pipelines.stats.rows import Provenance, build_stats_table

# Images per write batch: masks are written this many at a time, and the committer gets their rows together.
WRITE_BATCH_ROWS = 64


class WriteOutputs:
    """Writes each image's mask PNG (encoded by the model stage), then hands the batch's rows to the `StatsCommitter`.

    Masks go first: a committed row is the record that its image is done, so a crash between the
    two leaves masks that the next run simply rewrites, never rows without masks. The hand-over
    waits for the committer's answer, so a committer that cannot commit stops the pipeline.
    """

    def __init__(self, output_uri: str, class_names: list[str], provenance: Provenance, committer, *,
                 write_concurrency: int = 16):
        self.masks_uri = storage.join(output_uri, MASKS_DIR)
        self.committer = committer
        self.class_names = class_names
        self.provenance = provenance
        self.pool = ThreadPoolExecutor(max_workers=write_concurrency)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        mask_uris: list[str | None] = [
            None if is_error(error) else storage.join(self.masks_uri, mask_key_for(key))
            for key, error in zip(batch["key"], batch["error"])
        ]
        jobs = [(uri, png) for uri, png in zip(mask_uris, batch["mask_png"]) if uri is not None]
        list(self.pool.map(lambda job: storage.write_bytes_atomic(*job), jobs))
        table = build_stats_table(batch, mask_uris, self.class_names, self.provenance,
                                  datetime.datetime.now(datetime.timezone.utc))
        import ray

        ray.get(self.committer.add.remote(table))
        return {"status": np.asarray(table.column("status").to_pylist(), dtype=object)}
