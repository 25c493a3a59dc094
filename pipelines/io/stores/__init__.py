"""Storage backends: one module per store, each registering itself for the URI schemes it serves.

Which store serves which scheme, its credentials and how it creates a file only if absent: the table in
``docs/storage.md``, which also says how to add a backend (one module here, decorated with `register_store`,
and its import below). Code elsewhere reaches stores through `pipelines.io.storage`.
"""
from pipelines.io.stores import gcs, local, s3  # noqa: F401  (each registers itself on import)
from pipelines.io.stores.base import WHOLE, ListingShard, ObjectInfo, Store
from pipelines.io.stores.registry import register_store, registered_schemes, store_for

__all__ = ["WHOLE", "ListingShard", "ObjectInfo", "Store", "register_store", "registered_schemes", "store_for"]
