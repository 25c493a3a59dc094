"""Where result files go: artifacts of an MLflow run, and optionally a folder or bucket prefix too."""
from __future__ import annotations

from collections.abc import Mapping

from pipelines.io import storage
from pipelines.tracking.runs import DisabledRun, TrackedRun


def publish_files(files: Mapping[str, bytes], run: TrackedRun | DisabledRun, output: str | None) -> list[str]:
    """Log each ``{name: content}`` as an artifact of ``run`` and write it to ``output/name``.

    Returns the URIs written under ``output`` (none without one).
    """
    for name, data in files.items():
        run.log_bytes(data, name)
    if output is None:
        return []
    written = []
    for name, data in files.items():
        uri = storage.join(output, name)
        storage.write_bytes_atomic(uri, data)
        written.append(uri)
    return written
