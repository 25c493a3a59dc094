"""Which data a run used: digests of what it read, logged to MLflow as the run's dataset inputs.

Every job that reads data records it with ``mlflow``'s dataset inputs (the "Datasets used" of a run
in the MLflow UI): training its training and validation splits and any mixed-in set, evaluation its
held-out set, segmentation the images it labelled. Each input carries a digest, so two runs used
the same data exactly when their digests agree, and `compare_models` refuses to weigh scores
computed on different ones.

A digest is a multiset hash: the sum, modulo 2^64, of a 64-bit BLAKE2b hash of each item's line
(URI, and the object's etag or content hash where there is one, so a mask corrected in place
changes it). It does not depend on the order items are listed or processed in, so it is built a
batch at a time wherever the items pass (the statistics committer of a 10M-image run never holds
them), and it is the same on every machine and version: plain BLAKE2b, not a per-process hash.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow.entities import DatasetInput

_MODULUS = 2**64
CONTEXT_TAG = "mlflow.data.context"  # the tag the MLflow UI shows as a dataset's context


@dataclass
class SetDigest:
    """An order-independent digest of text lines, added a batch at a time; ``count`` lines so far."""

    total: int = 0
    count: int = 0

    def add(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.total = (self.total + int.from_bytes(hashlib.blake2b(line.encode(), digest_size=8).digest(),
                                                      "little")) % _MODULUS
            self.count += 1

    def plus(self, other: SetDigest, times: int = 1) -> SetDigest:
        """This set together with ``times`` copies of ``other`` (a set mixed in more than once)."""
        return SetDigest((self.total + times * other.total) % _MODULUS, self.count + times * other.count)

    @property
    def hexdigest(self) -> str:
        return f"{self.total:016x}"


@dataclass(frozen=True)
class DataInput:
    """One dataset a run read: what the MLflow UI lists under the run's inputs."""

    name: str  # e.g. "train split of data/synthetic"
    source: str  # the URI it was read from
    digest: str
    rows: int  # images (or image/mask pairs)
    context: str  # training, validation, evaluation or segmentation

    def to_mlflow(self) -> DatasetInput:
        # Imported here: the statistics committer, a Ray actor, needs this module's digests only, and
        # importing mlflow took it a CPU-second that, on a small node, came out of the model actor's start.
        from mlflow.entities import Dataset, DatasetInput, InputTag

        scheme = self.source.split("://", 1)[0] if "://" in self.source else "local"
        dataset = Dataset(name=self.name, digest=self.digest, source_type=scheme,
                          source=json.dumps({"uri": self.source}), profile=json.dumps({"rows": self.rows}))
        return DatasetInput(dataset=dataset, tags=[InputTag(key=CONTEXT_TAG, value=self.context)])
