"""Where result files go: artifacts of an MLflow run, and optionally a folder or bucket prefix too."""
from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping

from pipelines import storage
from pipelines.tracking import DisabledRun, TrackedRun


def publish_files(files: Mapping[str, bytes], run: TrackedRun | DisabledRun, output: str | None) -> list[str]:
    """Log each ``{name: content}`` as an artifact of ``run`` and write it to ``output/name``.

    Returns the URIs written under ``output`` (none without one). MLflow uploads from local files,
    so the contents pass through a temporary folder that is gone afterwards.
    """
    if run.enabled:
        with tempfile.TemporaryDirectory(prefix="fcn-evaluation-") as folder:
            for name, data in files.items():
                path = os.path.join(folder, name)
                with open(path, "wb") as handle:
                    handle.write(data)
                run.log_artifact(path)
    if output is None:
        return []
    written = []
    for name, data in files.items():
        uri = storage.join(output, name)
        storage.write_bytes_atomic(uri, data)
        written.append(uri)
    return written
