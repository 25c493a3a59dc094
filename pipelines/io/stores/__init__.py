"""Storage backends: one module per store, each registering itself for the URI schemes it serves.

| module | schemes | create if absent |
|---|---|---|
| `local` | paths, ``file://`` | hard link of a temporary file |
| `s3` | ``s3://``, ``s3a://`` | PUT with ``If-None-Match: *`` (checked: a server that ignores it gets none) |
| `gcs` | ``gs://``, ``gcs://`` | upload with ``ifGenerationMatch=0`` |
| (`base.Store`) | any other fsspec protocol | none: the output lease settles races by write, wait, read back |

A new backend is one module here: a `Store` subclass (an `ObjectStore` for a bucket store: one
listing call and, where its client spells it differently, the conditional write) decorated with
`register_store`, and its import below. Code elsewhere reaches stores through `pipelines.io.storage`.
"""
from pipelines.io.stores import gcs, local, s3  # noqa: F401  (each registers itself on import)
from pipelines.io.stores.base import WHOLE, ListingShard, ObjectInfo, Store
from pipelines.io.stores.registry import register_store, registered_schemes, store_for

__all__ = ["WHOLE", "ListingShard", "ObjectInfo", "Store", "register_store", "registered_schemes", "store_for"]
