"""The last stage of batch segmentation: commit each batch's masks, then its statistics.

Free of torch, like ``pipelines.segmentation.prepare``: its actors start while the model actor is
still loading, and a torch import would take CPU from exactly that.
"""
from __future__ import annotations

import datetime
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from fcn_core.masks import encode_mask_png
from pipelines import storage
from pipelines.batches import is_error
from pipelines.segmentation.keys import MASKS_DIR, mask_key_for
from pipelines.segmentation.stats import Provenance, build_stats_table, write_stats_part


class WriteOutputs:
    """Writes each image's mask PNG, then the batch's statistics as one Parquet part file.

    Masks go first: a part file is the commit record of its images, so a crash between the two
    leaves masks that the next run simply rewrites, never rows without masks.
    """

    def __init__(self, output_uri: str, class_names: list[str], provenance: Provenance, *, stats_uri: str,
                 write_concurrency: int = 16):
        self.masks_uri = storage.join(output_uri, MASKS_DIR)
        self.stats_uri = stats_uri
        self.class_names = class_names
        self.provenance = provenance
        self.pool = ThreadPoolExecutor(max_workers=write_concurrency)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        mask_uris: list[str | None] = [
            None if is_error(error) else storage.join(self.masks_uri, mask_key_for(key))
            for key, error in zip(batch["key"], batch["error"])
        ]
        jobs = [(uri, mask) for uri, mask in zip(mask_uris, batch["mask"]) if uri is not None]
        list(self.pool.map(lambda job: storage.write_bytes_atomic(job[0], encode_mask_png(job[1])), jobs))
        table = build_stats_table(batch, mask_uris, self.class_names, self.provenance,
                                  datetime.datetime.now(datetime.timezone.utc))
        write_stats_part(self.stats_uri, table)
        return {"status": np.asarray(table.column("status").to_pylist(), dtype=object)}
