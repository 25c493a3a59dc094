"""Which store serves which URI scheme: each backend module registers its class once, on import."""
from __future__ import annotations

from pipelines.io.stores.base import Store, scheme_of

_stores: dict[str, Store] = {}
# Schemes no backend registers go to fsspec as they are (``memory://``, ``az://`` with adlfs, ...).
_ANY_FSSPEC = Store()


def register_store(cls: type[Store]) -> type[Store]:
    """Class decorator: serve ``cls.schemes`` with one instance of ``cls``."""
    if not cls.schemes:
        raise ValueError(f"{cls.__name__} names no URI scheme to serve")
    taken = [scheme for scheme in cls.schemes if scheme in _stores]
    if taken:
        raise ValueError(f"{cls.__name__}: scheme(s) {', '.join(taken)} already served by "
                         f"{type(_stores[taken[0]]).__name__}")
    store = cls()
    _stores.update(dict.fromkeys(cls.schemes, store))
    return cls


def store_of_scheme(uri: str) -> Store:
    """The store registered for the scheme of ``uri``; the plain fsspec store for any other scheme.

    A lookup only: code outside the stores goes through `pipelines.io.storage.store_for`, which also refuses
    URIs that carry credentials."""
    return _stores.get(scheme_of(uri), _ANY_FSSPEC)


def registered_schemes() -> list[str]:
    """Every scheme a backend serves, sorted."""
    return sorted(_stores)


def table_schemes() -> list[str]:
    """The schemes whose store can hold a statistics table (overrides `Store.table_location`), sorted."""
    return sorted(scheme for scheme, store in _stores.items()
                  if type(store).table_location is not Store.table_location)
