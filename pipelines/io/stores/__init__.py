"""Storage backends: one module per store, each registering itself for the URI schemes it serves.

Which store serves which scheme, its credentials and how it creates a file only if absent: the table in
``docs/storage.md``; each backend's module docstring has the details. `registered_schemes()` lists the
schemes, and `base.Store` serves any other fsspec protocol (with no atomic "create if absent": the
output lease settles races by write, wait, read back).

A new backend is one module here: a `Store` subclass (an `ObjectStore` for a bucket store: one
listing call and, where its client spells it differently, the conditional write) decorated with
`register_store`, and its import below. Code elsewhere reaches stores through `pipelines.io.storage`.
"""
from pipelines.io.stores import gcs, local, s3  # noqa: F401  (each registers itself on import)
from pipelines.io.stores.base import WHOLE, ListingShard, ObjectInfo, Store
from pipelines.io.stores.registry import register_store, registered_schemes, store_of_scheme

__all__ = ["WHOLE", "ListingShard", "ObjectInfo", "Store", "register_store", "registered_schemes", "store_of_scheme"]
