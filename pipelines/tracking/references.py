"""A ``models:/`` reference, read without MLflow: its parts, what to say when it names nothing, a quick check.

A misspelt ``--model-name`` is the most common mistake with the nightly job. Importing MLflow and
opening its SQLite store costs about two seconds on a small machine, before MLflow can say that the
name does not exist; the registry's own two tables answer that in milliseconds. `check_reference`
asks them first (read-only, so nothing is created) and raises the same one-line errors as
`pipelines.tracking.models`, which builds its messages here too. Anything it cannot tell for sure (a
server, an unfamiliar schema) is left to MLflow: the check only ever refuses what is certainly missing.
"""
from __future__ import annotations

import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from pipelines.errors import ModelReferenceError
from pipelines.tracking.redaction import redact
from pipelines.tracking.store import CHOOSE_A_STORE, check_reference_store, describe_store, sqlite_path

# The alias the nightly job and the labelling loop label with; compare_models.py --promote moves it.
CHAMPION_ALIAS = "champion"


@dataclass(frozen=True)
class RegistryReference:
    """``models:/NAME@ALIAS`` (``alias`` set) or ``models:/NAME/VERSION`` (``version`` set)."""

    reference: str
    name: str
    alias: str | None = None
    version: str | None = None


def parse_registry_reference(reference: str) -> RegistryReference:
    """The parts of a ``models:/`` reference; ModelReferenceError for any other shape."""
    body = reference.removeprefix("models:/")
    name, at, alias = body.partition("@")
    if at and name and alias and "/" not in alias:
        return RegistryReference(reference, name, alias=alias)
    name, slash, version = body.partition("/")
    if slash and name and version.isdigit():
        return RegistryReference(reference, name, version=version)
    raise ModelReferenceError(f"{reference}: expected models:/NAME@ALIAS or models:/NAME/VERSION")


def how_to_set_alias(name: str, alias: str) -> str:
    """The command (or call) that points ``alias`` of ``name`` at a version."""
    if alias == CHAMPION_ALIAS:
        return (f"point it at a version with: python jobs/compare_models.py --models models:/{name}/VERSION "
                f"--data LABELLED_SET --promote")
    return f"point it at a version with MlflowClient().set_registered_model_alias('{name}', '{alias}', VERSION)"


def unknown_model_error(reference: str, name: str, tracking_uri: str) -> ModelReferenceError:
    """The error for a name the store does not hold: which store, and the two ways out."""
    return ModelReferenceError(f"{reference}: no registered model named '{name}' in "
                               f"{describe_store(redact(tracking_uri))}; register one with train_fcn.py "
                               f"--register-as {name}, or {CHOOSE_A_STORE}")


def missing_alias_error(parsed: RegistryReference) -> ModelReferenceError:
    return ModelReferenceError(f"{parsed.reference}: registered model '{parsed.name}' has no alias "
                               f"'{parsed.alias}'; {how_to_set_alias(parsed.name, parsed.alias)}")


def check_reference(reference: str, tracking_uri: str) -> None:
    """Refuse, without MLflow, a reference whose store, registered name or alias certainly does not exist.

    The store must exist for ``models:/`` and ``runs:/`` references (`check_reference_store`). For a
    ``models:/`` reference into a SQLite store, its tables are read (read-only) for the name and the
    alias. A server, or a database whose tables this does not recognise, is left to MLflow.
    """
    check_reference_store(reference, tracking_uri)
    database = sqlite_path(tracking_uri)
    if not reference.startswith("models:/") or database is None:
        return
    parsed = parse_registry_reference(reference)
    try:
        with closing(sqlite3.connect(f"{Path(database).as_uri()}?mode=ro", uri=True)) as connection:
            has_name = connection.execute("SELECT 1 FROM registered_models WHERE name = ? LIMIT 1",
                                          (parsed.name,)).fetchone()
            has_alias = parsed.alias is None or connection.execute(
                "SELECT 1 FROM registered_model_aliases WHERE name = ? AND alias = ? LIMIT 1",
                (parsed.name, parsed.alias)).fetchone()
    except sqlite3.Error:
        return  # not a registry this recognises (or busy): MLflow answers instead
    if not has_name:
        raise unknown_model_error(reference, parsed.name, tracking_uri)
    if not has_alias:
        raise missing_alias_error(parsed)
