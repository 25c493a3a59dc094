"""The store registry is the one list of schemes: messages that name supported schemes read it."""
import pytest

from pipelines.errors import StorageError
from pipelines.io import storage
from pipelines.io.stores import registered_schemes
from pipelines.io.stores.registry import table_schemes


def test_table_schemes_are_the_registered_stores_that_hold_tables():
    assert {"file", "s3", "gs"} <= set(table_schemes()) <= set(registered_schemes())
    assert "memory" not in registered_schemes()


def test_a_scheme_without_tables_is_refused_naming_the_registered_ones():
    with pytest.raises(StorageError, match="not supported on memory://") as error:
        storage.table_location("memory://bucket/out")
    message = str(error.value)
    assert "local folders" in message
    for scheme in table_schemes():
        assert scheme == "file" or f"{scheme}://" in message
