"""Reading what labellers hand back without trusting the sizes it declares.

An export is a file from outside: a zip member may inflate a thousandfold, a PNG header or an RLE
may declare billions of pixels, a JSON document may nest deeper than any parser recurses. Every
size an export declares is checked here against the image it claims to describe, or against one of
the limits below, before anything of that size is allocated; what is wrong is one line naming the
file (`CorrectionError`, `ExportLimitError` for a limit).

The limits bound an import's memory whatever the file says: about 12 bytes per byte of a JSON
export (its text, the text without its strings while its nesting is measured, the parsed objects),
so at most ~0.8 GB for `MAX_JSON_BYTES`; for a zip, the largest mask of an image the output holds.
A mask itself costs what the image it describes costs in a normal import (at most a few bytes a
pixel of the largest image the output segmented), never more.
"""
from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from pipelines.errors import CorrectionError, ExportLimitError
from pipelines.io import storage

MAX_JSON_BYTES = 64 << 20
"""A COCO or Label Studio export's largest size. Parsed, JSON takes up to ~10x its text in Python
objects, so 64 MiB keeps an import under ~0.8 GB; a labelling round of thousands of corrected images
is a few MB to tens of MB (a brush or RLE region is ~1-50 kB). A larger export is split: imports
into one labelled set merge."""

MAX_JSON_DEPTH = 32
"""How deep arrays and objects may nest: COCO nests 5 deep, Label Studio 7. Checked before parsing,
so a document nested 200,000 deep is refused in a line, not a RecursionError."""

MAX_JSON_CONTAINERS = 2_000_000
"""How many arrays and objects an export may hold: each costs ~60-250 bytes parsed (against 2 bytes
of text for ``[],``), so this bounds them to ~0.5 GB; an export holds about 10 an image (image,
annotation, region, size, label lists), i.e. 200,000 images."""

MAX_ZIP_MEMBERS = 100_000
"""Members a VOC zip may hold: a mask an image plus two files; CVAT tasks hold at most thousands."""

MAX_ZIP_BYTES = 16 << 30
"""The sum of a zip's declared member sizes: masks are inflated one at a time, so this bounds the
time and the temporary disk of an import, not its memory."""

MAX_COMPRESSION_RATIO = 100
"""How much a member may inflate. PNG masks are deflated already, so zip deflates them by a few
percent and a label map by ~3x; deflate's own maximum, a zip bomb's, is 1032x."""

MAX_LABELMAP_BYTES = 1 << 20
"""labelmap.txt: 256 classes (a mask's values) of a line each, a few hundred bytes a line at most."""

# A central directory entry is 46 bytes, its name and its extra fields.
_DIRECTORY_BYTES_PER_MEMBER = 256
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"?')  # a JSON string, unterminated at the end of the text too
_SCAN_BYTES = 1 << 22  # the nesting is measured this much text at a time, so it costs 4 MiB of int32


def read_json(uri: str) -> object:
    """The JSON document at ``uri``, after its size, nesting and number of containers passed the limits."""
    size = storage.run_io(uri, lambda: storage.resolve(uri)[0].size(storage.resolve(uri)[1]))
    if size > MAX_JSON_BYTES:
        raise ExportLimitError(f"{uri} is {size / 2 ** 20:.0f} MiB, over the {MAX_JSON_BYTES >> 20} MiB an export may "
                               "be: split it into several exports and import each into the same labelled set")
    data = storage.read_bytes(uri)[:MAX_JSON_BYTES]
    _check_nesting(data, uri)
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as error:  # JSONDecodeError, bad UTF-8, an integer of 4300+ digits
        raise CorrectionError(f"{uri} is not JSON ({str(error).splitlines()[0][:200]})") from None


def _check_nesting(data: bytes, uri: str) -> None:
    """Refuse JSON text nested deeper than `MAX_JSON_DEPTH` or holding more than `MAX_JSON_CONTAINERS`
    arrays and objects, counting the brackets outside strings (in bounded memory, before parsing)."""
    skeleton = np.frombuffer(_STRING.sub(b'""', data), np.uint8)
    depth, deepest, containers = 0, 0, 0
    for start in range(0, skeleton.size, _SCAN_BYTES):
        text = skeleton[start:start + _SCAN_BYTES]
        opens = (text == ord("[")) | (text == ord("{"))
        steps = opens.view(np.int8) - ((text == ord("]")) | (text == ord("}"))).view(np.int8)
        levels = np.cumsum(steps, dtype=np.int32) + depth
        deepest, depth = max(deepest, int(levels.max())), int(levels[-1])
        containers += int(np.count_nonzero(opens))
        if deepest > MAX_JSON_DEPTH:
            raise ExportLimitError(f"{uri} is nested more than {MAX_JSON_DEPTH} deep: not an export of a labelling "
                                   "tool")
    if containers > MAX_JSON_CONTAINERS:
        raise ExportLimitError(f"{uri} holds {containers} arrays and objects, over the {MAX_JSON_CONTAINERS} an "
                               "export may: split it into several exports and import each into the same labelled set")


def dimension(value: object, name: str, where: str) -> int:
    """A height or width an export gives: a whole positive number (JSON has no integer type, so 24.0 is 24)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not (isinstance(value, int) or value.is_integer()) or not 0 < value < 2 ** 31:
        raise CorrectionError(f"{where}: {name} is {str(value)[:40]!r}, not a whole number of pixels")
    return int(value)


def zip_members(archive: zipfile.ZipFile, uri: str) -> dict[str, zipfile.ZipInfo]:
    """The members of ``archive`` by name, after their count, declared sizes and ratios passed the limits."""
    members = archive.infolist()
    if len(members) > MAX_ZIP_MEMBERS:
        raise ExportLimitError(f"{uri} holds {len(members)} files, over the {MAX_ZIP_MEMBERS} an export may: "
                               "split it into several exports and import each into the same labelled set")
    total = sum(member.file_size for member in members)
    if total > MAX_ZIP_BYTES:
        raise ExportLimitError(f"{uri} inflates to {total / 2 ** 30:.1f} GiB, over the {MAX_ZIP_BYTES >> 30} GiB an "
                               "export may")
    for member in members:
        if member.file_size > MAX_COMPRESSION_RATIO * max(member.compress_size, 1 << 10):
            raise ExportLimitError(f"{uri}: {member.filename} inflates {member.compress_size} bytes to "
                                   f"{member.file_size}, more than the {MAX_COMPRESSION_RATIO}x a mask or label map "
                                   "deflates: not an export of a labelling tool")
    return {member.filename: member for member in members}


def read_member(archive: zipfile.ZipFile, member: zipfile.ZipInfo, limit: int, where: str) -> bytes:
    """The bytes of ``member``, refused unread when it declares more than ``limit``; never more than that."""
    if member.file_size > limit:
        raise ExportLimitError(f"{where} inflates to {member.file_size} bytes, more than the {limit} the file it "
                               "is can hold")
    try:
        with archive.open(member) as handle:
            data = handle.read(limit + 1)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError, RuntimeError) as error:
        # zlib.error is an Exception of its own; encrypted members raise RuntimeError
        raise CorrectionError(f"{where}: an unreadable zip member ({type(error).__name__}: "
                              f"{str(error)[:200]})") from None
    except Exception as error:  # noqa: BLE001 - zlib.error and the other errors of a corrupt deflate stream
        raise CorrectionError(f"{where}: an unreadable zip member ({type(error).__name__}: "
                              f"{str(error)[:200]})") from None
    if len(data) > limit:
        raise ExportLimitError(f"{where} inflates to more than the {limit} bytes it declares")
    return data


@contextmanager
def zip_archive(path: str, uri: str) -> Iterator[zipfile.ZipFile]:
    """The zip at local ``path`` (a copy of ``uri``), opened; one line if it is none.

    Opening a zip parses its whole central directory, so the directory's declared size is checked
    first, as CPython's zipfile reads it from the end record.
    """
    try:
        with open(path, "rb") as handle:
            end = zipfile._EndRecData(handle)  # noqa: SLF001 - the same record ZipFile then trusts
    except OSError as error:
        raise CorrectionError(f"{uri} cannot be read ({error})") from None
    if end and end[zipfile._ECD_SIZE] > MAX_ZIP_MEMBERS * _DIRECTORY_BYTES_PER_MEMBER:  # noqa: SLF001
        raise ExportLimitError(f"{uri} has a central directory of {end[zipfile._ECD_SIZE]} bytes, more than "  # noqa: SLF001
                               f"{MAX_ZIP_MEMBERS} files take: split it into several exports")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError) as error:
        raise CorrectionError(f"{uri} is not a zip ({str(error)[:200]})") from None
    with archive:
        yield archive
