"""The registry of label formats: a format is one module that registers its writer with `register_format`,
and the reader of the corrections labellers export back with `register_reader`."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

from pipelines.errors import ConfigError
from pipelines.labelling.correction import Correction, OutputImages
from pipelines.labelling.segmented import SegmentedImage

# (output URI, its images by key, destination URI) -> how many images the export holds
Writer = Callable[[str, list[SegmentedImage], str], int]
# (URI of the file a labelling tool exported, the images of the output it was made from) -> the corrected masks
Reader = Callable[[str, OutputImages], Iterator[Correction]]


@dataclass(frozen=True)
class ExportFormat:
    """A format labelling tools import: its name on the command line, who imports it and how, its writer;
    and, once its reader is registered, how a tool exports corrections in it and that reader."""

    name: str
    imported_by: str
    write: Writer
    exported_by: str | None = None
    read: Reader | None = None


_FORMATS: dict[str, ExportFormat] = {}


def register_format(name: str, *, imported_by: str) -> Callable[[Writer], Writer]:
    """Register the decorated writer as format ``name``; ``imported_by`` says which tool takes it and how."""
    def register(write: Writer) -> Writer:
        assert name not in _FORMATS, f"export format {name!r} registered twice"
        _FORMATS[name] = ExportFormat(name, imported_by, write)
        return write

    return register


def register_reader(name: str, *, exported_by: str) -> Callable[[Reader], Reader]:
    """Register the decorated reader for format ``name`` (registered with its writer first); ``exported_by``
    says which tool writes the file and how."""
    def register(read: Reader) -> Reader:
        assert name in _FORMATS and _FORMATS[name].read is None, f"reader of {name!r}: no such format, or twice"
        _FORMATS[name] = replace(_FORMATS[name], exported_by=exported_by, read=read)
        return read

    return register


def export_formats() -> list[str]:
    """The names of the registered formats, sorted."""
    return sorted(_FORMATS)


def import_formats() -> list[str]:
    """The names of the formats whose corrections can be read back, sorted."""
    return sorted(name for name, format in _FORMATS.items() if format.read is not None)


def export_format(name: str) -> ExportFormat:
    if name not in _FORMATS:
        raise ConfigError(f"unknown export format {name!r}; choose one of {', '.join(export_formats())}")
    return _FORMATS[name]


def import_format(name: str) -> ExportFormat:
    if name not in import_formats():
        raise ConfigError(f"cannot import format {name!r}; choose one of {', '.join(import_formats())}")
    return _FORMATS[name]
