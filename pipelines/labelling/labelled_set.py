"""Corrected masks as a labelled set, in the manifest layout training and evaluation read (`pipelines.io.labelled`).

    DEST/manifest.parquet   image_uri (the original image: nothing is copied), mask_uri and mask_sha256 (the
                            mask's content hash, so the set's digest changes with any corrected mask), a row an image
    DEST/masks/<mask key>   each corrected mask, a palette PNG named after its image's key (`mask_key_for`)
    DEST/labelmap.txt       the output's, which names the classes for train_fcn.py

The manifest has no split column, so each image belongs to every split. Imports into one DEST merge:
the manifest holds every image imported there, the latest import's mask winning per image. An import
is staged: the corrections are read, checked and encoded into a local folder first, so an export
that is refused leaves DEST as it was; then the masks are uploaded, and the manifest written last,
in one piece. Importing the same export again writes the same bytes.
"""
from __future__ import annotations

import hashlib
import io
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from fcn_core.masks import LABELMAP_NAME, encode_mask_png, labelmap_class_names
from pipelines.errors import ConfigError, UserError
from pipelines.io import storage
from pipelines.io.labelled import MASK_SHA256
from pipelines.labelling.formats import CorrectionError, read_corrections
from pipelines.stats.keys import MASKS_DIR, mask_key_for

MANIFEST_NAME = "manifest.parquet"
# Masks uploaded at once: each is one small PUT, so on an object store uploading them one after
# another would wait on latency, not bandwidth.
_UPLOAD_CONCURRENCY = 16


@dataclass(frozen=True)
class ImportedCorrections:
    """What an import did: how many corrected masks it brought, how many images DEST now holds, its manifest."""

    imported: int
    images: int
    manifest_uri: str


def import_corrections(output_uri: str, source_uri: str, destination_uri: str, *, format: str,
                       partition: str | None = None) -> ImportedCorrections:
    """Import the corrections in ``source_uri`` (``format``, exported from an export of ``output_uri``) into
    the labelled set at ``destination_uri``.

    Refuses, in one line and before writing anything, an export whose images, mask sizes or classes
    the output does not know (see `read_corrections`), a DEST whose labelmap.txt names other classes,
    and a mask name in DEST that another image's mask already holds (images of two outputs sharing a
    key: import those into separate sets).

    The manifest of DEST is held on the driver while it is rewritten (about 200 bytes an image with
    60-character URIs): a set of corrected images, which people drew one by one.
    """
    destination = _absolute(destination_uri)
    if storage.relative_key(destination, output_uri) == "":
        raise ConfigError(f"import into another place than the output {output_uri}: its masks/ holds the model's masks")
    storage.check_writable(destination)
    corrections = read_corrections(output_uri, source_uri, format=format, partition=partition)
    labelmap = storage.read_bytes(storage.join(output_uri, LABELMAP_NAME))
    _check_classes(destination, labelmap, output_uri)
    manifest_uri = storage.join(destination, MANIFEST_NAME)
    pairs = _read_manifest(manifest_uri)  # image URI -> (mask URI, mask SHA-256)
    owners = {mask_uri: image_uri for image_uri, (mask_uri, _) in pairs.items()}
    imported: dict[str, tuple[str, str]] = {}
    with tempfile.TemporaryDirectory(prefix="corrections-") as staging:
        staged: dict[str, str] = {}  # mask URI -> local file; an image corrected twice in one export: the later
        for correction in corrections:
            mask_uri = storage.join(destination, MASKS_DIR, mask_key_for(correction.image_key))
            owner = owners.setdefault(mask_uri, correction.image_uri)
            if owner != correction.image_uri:
                raise CorrectionError(f"{mask_uri} already holds the mask of {owner}, and {correction.image_uri} has "
                                      "the same key: import each output's corrections into a labelled set of its own")
            path = staged.setdefault(mask_uri, os.path.join(staging, f"{len(staged)}.png"))
            png = encode_mask_png(correction.mask)
            with open(path, "wb") as handle:
                handle.write(png)
            imported[correction.image_uri] = (mask_uri, hashlib.sha256(png).hexdigest())
        if not imported:
            raise UserError(f"no corrected masks in {source_uri} (tasks nobody annotated are left out)")
        with ThreadPoolExecutor(_UPLOAD_CONCURRENCY) as pool:
            list(pool.map(lambda item: storage.upload_file(item[1], item[0]), staged.items()))
    if not storage.exists(storage.join(destination, LABELMAP_NAME)):
        storage.write_bytes_atomic(storage.join(destination, LABELMAP_NAME), labelmap)
    pairs.update(imported)
    storage.write_bytes_atomic(manifest_uri, _manifest_bytes(pairs))
    return ImportedCorrections(len(imported), len(pairs), manifest_uri)


def _absolute(uri: str) -> str:
    """``uri`` without a trailing slash; a local path made absolute, since the manifest names masks by URI."""
    filesystem, path = storage.resolve(uri)
    return path if storage.is_local(filesystem) else uri.rstrip("/")


def _check_classes(destination: str, labelmap: bytes, output_uri: str) -> None:
    """Refuse to add masks of the output's classes to a DEST whose labelmap.txt names others."""
    uri = storage.join(destination, LABELMAP_NAME)
    if not storage.exists(uri):
        return
    held, incoming = (labelmap_class_names(text.decode("utf-8")) for text in (storage.read_bytes(uri), labelmap))
    if held != incoming:
        raise CorrectionError(f"{uri} names the classes {', '.join(held)}, but {output_uri} has "
                              f"{', '.join(incoming)}: import into a labelled set of its own")


def _read_manifest(uri: str) -> dict[str, tuple[str, str]]:
    """{image URI: (mask URI, mask SHA-256)} of the manifest at ``uri``; empty when there is none yet."""
    if not storage.exists(uri):
        return {}
    try:
        table = pq.read_table(io.BytesIO(storage.read_bytes(uri)))
        images, masks = table.column("image_uri").to_pylist(), table.column("mask_uri").to_pylist()
    except (pa.ArrowException, ValueError, KeyError) as error:
        raise UserError(f"{uri} is not a manifest of image_uri and mask_uri ({error}): import into another "
                        "place") from None
    hashes = (table.column(MASK_SHA256).to_pylist() if MASK_SHA256 in table.column_names
              else [""] * table.num_rows)  # a manifest written before masks were hashed
    return {image: (mask, sha or "") for image, mask, sha in zip(images, masks, hashes)}


def _manifest_bytes(pairs: dict[str, tuple[str, str]]) -> bytes:
    """The manifest's Parquet bytes, rows by image URI: the same pairs always give the same bytes."""
    images = sorted(pairs)
    table = pa.table({"image_uri": pa.array(images, pa.string()),
                      "mask_uri": pa.array([pairs[image][0] for image in images], pa.string()),
                      MASK_SHA256: pa.array([pairs[image][1] for image in images], pa.string())})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()
