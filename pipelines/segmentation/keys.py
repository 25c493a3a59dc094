"""Names derived from user data: mask keys under the output prefix and Parquet column names.

Both come from strings we do not control (object keys, class names), so both are built to be safe
whatever they contain: a mask key can never leave the output prefix, and a column name is always a
plain identifier.
"""
from __future__ import annotations

import posixpath
import re

# Percent-encoded in a mask key: ``%`` itself (which keeps the mapping injective), backslashes
# (a path separator on Windows tools), ``?`` and ``#`` (URL syntax) and control characters.
_ESCAPED = re.compile(r"[%\\?#\x00-\x1f\x7f]")


def _escape_segment(segment: str) -> str:
    if segment in (".", ".."):
        return segment.replace(".", "%2E")
    return _ESCAPED.sub(lambda match: f"%{ord(match.group()):02X}", segment)


def mask_key_for(image_key: str) -> str:
    """The mask's key relative to ``OUTPUT/masks/``: the image key without its extension, plus ``.png``.

    ``.`` and ``..`` segments, empty segments and leading slashes are escaped rather than interpreted,
    so the result always stays below the masks prefix, and two different image keys with the same
    extension never share a mask. Unicode and spaces are kept so a person recognises the file.
    """
    stem, _extension = posixpath.splitext(image_key)
    segments = [_escape_segment(s) if s else "%00" for s in stem.split("/")]
    return "/".join(segments) + ".png"


def column_suffixes(class_names: list[str]) -> list[str]:
    """One identifier per class for ``pixels_<name>`` style columns: lower-case ``[a-z0-9_]``, unique."""
    suffixes: list[str] = []
    for index, name in enumerate(class_names):
        suffix = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or f"class_{index}"
        if suffix in suffixes:
            suffix = f"{suffix}_{index}"
        suffixes.append(suffix)
    return suffixes
