"""Files a careless or hostile labeller could hand back, for the hostile-import tests and `benchmarks.hostile_imports`.

Each is small on disk and declares something large: a zip member that inflates to gigabytes, a PNG
header of billions of pixels, JSON nested deeper than any parser recurses.
"""
from __future__ import annotations

import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

from fcn_core.masks import encode_mask_png


def deflate_bomb_zip(path: Path, members: dict[str, bytes], bomb_name: str, bomb_bytes: int) -> None:
    """A zip of ``members`` plus ``bomb_name``, deflated zeros that inflate to ``bomb_bytes`` (a multiple of 1 MiB).

    Written by hand, a megabyte of input at a time: deflating gigabytes would take the test minutes.
    After a full flush deflate starts afresh, so every megabyte of zeros deflates to the same bytes;
    the member's CRC is left 0 (a reader that checks sizes first never gets that far).
    """
    chunk = bytes(1 << 20)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    piece = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    stream = piece * (bomb_bytes >> 20) + zlib.compressobj(9, zlib.DEFLATED, -15).flush()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    with open(path, "r+b") as handle:  # rewrite with the bomb appended before the central directory
        content = handle.read()
    entries = zipfile.ZipFile(path).infolist()
    directory_at = content.index(b"PK\x01\x02")
    name = bomb_name.encode()
    local = struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 8, 0, 0, 0, len(stream), bomb_bytes, len(name), 0)
    central = struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0, 8, 0, 0, 0, len(stream), bomb_bytes,
                          len(name), 0, 0, 0, 0, 0, directory_at)
    old_directory = content[directory_at:content.index(b"PK\x05\x06")]
    directory = old_directory + central + name
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, len(entries) + 1, len(entries) + 1, len(directory),
                      directory_at + len(local) + len(name) + len(stream), 0)
    path.write_bytes(content[:directory_at] + local + name + stream + directory + end)


def png_declaring(width: int, height: int) -> bytes:
    """A palette PNG whose header (IHDR) says ``width`` x ``height`` but which holds one row of pixels."""
    png = encode_mask_png(np.zeros((1, 8), np.uint8))
    header = struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0)
    chunk = struct.pack(">I", len(header)) + b"IHDR" + header + struct.pack(">I", zlib.crc32(b"IHDR" + header))
    return png[:8] + chunk + png[8 + len(chunk):]


def nested_json(depth: int) -> bytes:
    """A JSON list nested ``depth`` deep."""
    return b"[" * depth + b"]" * depth
