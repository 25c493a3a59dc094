"""Which images are already done: read from the statistics table, which doubles as the ledger.

An image is identified by its URI, optionally together with its etag (so a changed object counts
as new) and the model version (so a new model re-labels everything, but only when asked). The set
of done identities is kept as sorted 64-bit hashes: 8 bytes per image, cheap to ship to every
filtering task even for hundreds of millions of images.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from pipelines.segmentation.stats import read_stats


@dataclass(frozen=True)
class SkipPolicy:
    """What makes an image "already done"."""

    match_etag: bool = False  # incremental runs: a changed object is processed again
    match_model_version: bool = False  # re-label everything once the model changes

    def identity(self, uri: str, etag: str | None, model_version: str | None) -> bytes:
        parts = [uri]
        if self.match_etag:
            parts.append(etag or "")
        if self.match_model_version:
            parts.append(model_version or "")
        return "\0".join(parts).encode()


def _hash(identity: bytes) -> np.uint64:
    return np.frombuffer(hashlib.blake2b(identity, digest_size=8).digest(), dtype=np.uint64)[0]


def load_done(stats_uri: str, policy: SkipPolicy) -> np.ndarray:
    """Sorted uint64 hashes of the identities of every image with a committed row."""
    table = read_stats(stats_uri, columns=["image_uri", "etag", "model_version"])
    if table is None:
        return np.zeros(0, dtype=np.uint64)
    rows = zip(*(table.column(name).to_pylist() for name in ("image_uri", "etag", "model_version")))
    return np.unique(np.array([_hash(policy.identity(*row)) for row in rows], dtype=np.uint64))


def drop_done(batch: dict[str, np.ndarray], *, done: np.ndarray, policy: SkipPolicy,
              model_version: str | None) -> dict[str, np.ndarray]:
    """Keep only the listed objects whose identity is not in ``done`` (a Ray Data map_batches fn)."""
    if len(done) == 0:
        return batch
    hashes = np.array([_hash(policy.identity(uri, etag, model_version))
                       for uri, etag in zip(batch["uri"], batch["etag"])], dtype=np.uint64)
    keep = ~np.isin(hashes, done, assume_unique=False)
    return {name: column[keep] for name, column in batch.items()}
