"""What a batch-segmentation output really holds, read with the test's own clients.

`audit_output` reads the statistics table (its current version) and every mask object under an output prefix and
checks the job's promises against the list of inputs: one row per input (none lost, none
duplicated), a readable mask of the row's size behind every ``ok`` row, no mask that no row
claims, and nothing half-written that a reader could take for a result.
"""
from __future__ import annotations

import collections
import json
import posixpath
from dataclasses import dataclass

import fsspec
from fsspec.implementations.local import LocalFileSystem

from fcn_core.masks import decode_mask_png
from tests.fixtures.stats_table import s3_options, table_rows


@dataclass(frozen=True)
class OutputAudit:
    inputs: int
    rows: list[dict]
    lost: list[str]  # inputs without a row
    duplicated: list[str]  # inputs with more than one row
    unexpected: list[str]  # rows for URIs that were not inputs
    missing_masks: list[str]  # ok rows whose mask is absent, unreadable or of the wrong size
    orphan_masks: list[str]  # mask objects no row points to
    shared_masks: list[str]  # masks that more than one row points to (one image's mask overwrote another's)
    unreadable: list[str]  # a table or other objects a reader would choke on
    escaped: list[str]  # objects written outside the output prefix (when a parent was audited)
    summary: dict | None

    @property
    def counts(self) -> dict[str, int]:
        statuses = collections.Counter(row["status"] for row in self.rows)
        return {"inputs": self.inputs, "rows": len(self.rows), "ok": statuses["ok"], "error": statuses["error"],
                "lost": len(self.lost), "duplicated": len(self.duplicated)}

    def problems(self) -> dict[str, list[str]]:
        """Every broken promise, by kind; empty when the output is exactly right."""
        found = {"lost": self.lost, "duplicated": self.duplicated, "unexpected": self.unexpected,
                 "missing_masks": self.missing_masks, "orphan_masks": self.orphan_masks,
                 "shared_masks": self.shared_masks, "unreadable": self.unreadable, "escaped": self.escaped}
        return {kind: items[:10] for kind, items in found.items() if items}


def _path(uri: str) -> str:
    """A row's URI as a path of the audit's filesystem (``s3://b/k`` -> ``b/k``; local paths as they are)."""
    return uri.split("://", 1)[1] if "://" in uri else uri


def _read_rows(fs: fsspec.AbstractFileSystem, output: str) -> tuple[list[dict], list[str]]:
    """Every row of the table's current version, or the reason it cannot be read."""
    if isinstance(fs, LocalFileSystem):
        uri, options = output, None
    else:
        uri = f"s3://{output}"
        options = s3_options(fs.client_kwargs["endpoint_url"], fs.key, fs.secret)
    try:
        return table_rows(uri, options), []
    except Exception as error:  # noqa: BLE001 - an unreadable table is a finding
        return [], [f"{output}/stats: {error}"]


def _bad_masks(fs: fsspec.AbstractFileSystem, rows: list[dict], masks: set[str]) -> list[str]:
    """The ok rows whose mask is absent, undecodable or not of the row's height and width."""
    paths = [_path(row["mask_uri"]) for row in rows if row["status"] == "ok"]
    contents = fs.cat([path for path in paths if path in masks]) if paths else {}
    bad = []
    for row, path in zip((row for row in rows if row["status"] == "ok"), paths):
        if path not in contents:
            bad.append(f"{path}: absent")
            continue
        try:
            shape = decode_mask_png(contents[path]).shape
        except Exception as error:  # noqa: BLE001 - an undecodable mask is a finding
            bad.append(f"{path}: {type(error).__name__} {error}")
            continue
        if shape != (row["height"], row["width"]):
            bad.append(f"{path}: mask {shape} for a {row['height']}x{row['width']} image")
    return bad


def audit_output(fs: fsspec.AbstractFileSystem, output: str, inputs: list[str], *, scope: str | None = None,
                 preexisting: frozenset[str] = frozenset()) -> OutputAudit:
    """Audit the output at ``output`` (a path in ``fs``: ``bucket/prefix`` or a local folder).

    ``inputs`` are the image URIs that must each have exactly one row. ``scope`` (a parent of
    ``output``) is searched for files the job wrote outside ``output``: any file there that is
    not in ``preexisting`` (taken before the run) counts as escaped.
    """
    output = output.rstrip("/")
    files = sorted(fs.find(output)) if fs.exists(output) else []
    rows, unreadable = _read_rows(fs, output)
    # What a killed local writer leaves behind (`storage.open_atomic`: ".tmp-RANDOM").
    unreadable += [path for path in files if posixpath.basename(path).startswith(".tmp-")]
    masks = {path for path in files if path.startswith(f"{output}/masks/")}
    per_uri = collections.Counter(row["image_uri"] for row in rows)
    claims = collections.Counter(_path(row["mask_uri"]) for row in rows if row["mask_uri"])
    summary_path = f"{output}/summary.json"
    escaped = [] if scope is None else [path for path in fs.find(scope.rstrip("/"))
                                        if not path.startswith(f"{output}/") and path not in preexisting]
    return OutputAudit(
        inputs=len(inputs), rows=rows,
        lost=sorted(set(inputs) - set(per_uri)),
        duplicated=sorted(uri for uri, count in per_uri.items() if count > 1),
        unexpected=sorted(set(per_uri) - set(inputs)),
        missing_masks=_bad_masks(fs, rows, masks),
        orphan_masks=sorted(masks - set(claims)),
        shared_masks=sorted(path for path, count in claims.items() if count > 1),
        unreadable=unreadable,
        escaped=escaped,
        summary=json.loads(fs.cat(summary_path)) if summary_path in files else None,
    )
