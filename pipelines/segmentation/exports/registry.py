"""The registry of export formats: a format is one module that registers its writer with `register_format`."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pipelines.errors import ConfigError
from pipelines.segmentation.exports.segmented import SegmentedImage

# (output URI, its images by key, destination URI) -> how many images the export holds
Writer = Callable[[str, list[SegmentedImage], str], int]


@dataclass(frozen=True)
class ExportFormat:
    """A format labelling tools import: its name on the command line, who imports it and how, its writer."""

    name: str
    imported_by: str
    write: Writer


_FORMATS: dict[str, ExportFormat] = {}


def register_format(name: str, *, imported_by: str) -> Callable[[Writer], Writer]:
    """Register the decorated writer as format ``name``; ``imported_by`` says which tool takes it and how."""
    def register(write: Writer) -> Writer:
        assert name not in _FORMATS, f"export format {name!r} registered twice"
        _FORMATS[name] = ExportFormat(name, imported_by, write)
        return write

    return register


def export_formats() -> list[str]:
    """The names of the registered formats, sorted."""
    return sorted(_FORMATS)


def export_format(name: str) -> ExportFormat:
    if name not in _FORMATS:
        raise ConfigError(f"unknown export format {name!r}; choose one of {', '.join(export_formats())}")
    return _FORMATS[name]
