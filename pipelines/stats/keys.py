"""Names derived from user data: mask keys under the output prefix and Parquet column names.

Both come from strings we do not control (object keys, class names), so both are built to be safe
whatever they contain: a mask key can never leave the output prefix, and a column name is always a
plain identifier.
"""
from __future__ import annotations

import hashlib
import posixpath
import re

MASKS_DIR = "masks"  # OUTPUT/masks/<mask key>
# Longest file or folder name most filesystems take (ext4, XFS, APFS: 255 bytes). Object stores take
# longer segments, but masks are also downloaded, exported and opened from local disks.
MAX_NAME_BYTES = 255
# Percent-encoded in a mask key: ``%`` itself (which keeps the mapping injective), backslashes
# (a path separator on Windows tools), ``?`` and ``#`` (URL syntax) and control characters.
_ESCAPED = re.compile(r"[%\\?#\x00-\x1f\x7f]")


def _escape_segment(segment: str) -> str:
    if segment in (".", ".."):
        return segment.replace(".", "%2E")
    return _ESCAPED.sub(lambda match: f"%{ord(match.group()):02X}", segment)


def _fit_name(name: str, suffix: str = "") -> str:
    """``name + suffix``, or, past `MAX_NAME_BYTES`, a prefix of ``name`` + ``~`` + a hash of it + ``suffix``.

    The hash keeps distinct long names distinct; the prefix keeps them recognisable.
    """
    if len((name + suffix).encode()) <= MAX_NAME_BYTES:
        return name + suffix
    digest = hashlib.blake2b(name.encode(), digest_size=8).hexdigest()
    room = MAX_NAME_BYTES - len(suffix.encode()) - len(digest) - 1
    prefix = name.encode()[:room].decode(errors="ignore")  # whole characters only
    return f"{prefix}~{digest}{suffix}"


def _safe_segments(key: str) -> list[str]:
    """``key``'s segments, escaped so that none is empty, ``.`` or ``..`` (see `mask_key_for`)."""
    return [_escape_segment(segment) if segment else "%00" for segment in key.split("/")]


def mask_key_for(image_key: str) -> str:
    """The mask's key relative to ``OUTPUT/masks/``: the image key, extension included, plus ``.png``.

    ``photo.jpg`` -> ``photo.jpg.png``: keeping the extension gives ``photo.jpg`` and ``photo.png`` in one
    folder a mask each. ``.`` and ``..`` segments, empty segments and leading slashes are escaped
    rather than interpreted, so the result always stays below the masks prefix, and two different
    image keys never share a mask. A segment longer than a file name may be (255 bytes, sooner when
    escaping triples ``%#?``) is shortened with a hash. Unicode and spaces are kept so a person
    recognises the file.
    """
    *folders, name = _safe_segments(image_key)
    return "/".join([*(_fit_name(folder) for folder in folders), _fit_name(name, ".png")])


def export_name_for(image_key: str) -> str:
    """The name of the image in a PASCAL VOC export: its key without extension, escaped as mask keys are.

    VOC tools (CVAT) pair ``SegmentationClass/<name>.png`` with the image of the same stem.
    """
    stem, _extension = posixpath.splitext(image_key)
    *folders, name = _safe_segments(stem)
    return "/".join([*(_fit_name(folder) for folder in folders), _fit_name(name, ".png")])[: -len(".png")]


def column_suffixes(class_names: list[str]) -> list[str]:
    """One identifier per class for ``pixels_<name>`` style columns: lower-case ``[a-z0-9_]``, unique."""
    suffixes: list[str] = []
    for index, name in enumerate(class_names):
        suffix = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or f"class_{index}"
        if suffix in suffixes:
            suffix = f"{suffix}_{index}"
        suffixes.append(suffix)
    return suffixes
