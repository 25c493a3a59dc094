"""MLflow runs as jobs use them: one that any process can log to (Ray Train's rank 0 too), and a
disabled one with the same methods for ``--no-tracking``."""
from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import mlflow
from mlflow.entities import Metric, Param, RunTag

from pipelines.io.lineage import DataInput
from pipelines.tracking.client import TrackingSettings, check_tracking_server, experiment_id, mlflow_client
from pipelines.tracking.redaction import flatten_params, plain_config, redact, redact_mapping
from pipelines.tracking.store import stray_store_notice


@dataclasses.dataclass(frozen=True)
class TrackedRun:
    """An MLflow run that any process can log to: picklable, so Ray Train's rank 0 can use it too."""

    tracking_uri: str
    run_id: str
    enabled: bool = dataclasses.field(default=True, init=False)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        now = int(time.time() * 1000)
        mlflow_client(self.tracking_uri).log_batch(self.run_id, metrics=[
            Metric(key, float(value), now, step or 0) for key, value in metrics.items()])

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Parameters known only once the run is under way (a job's resource plan), redacted."""
        mlflow_client(self.tracking_uri).log_batch(self.run_id, params=[
            Param(key, value) for key, value in flatten_params(params).items()])

    def log_dict(self, dictionary: Mapping[str, Any], artifact_file: str) -> None:
        """Log ``dictionary`` (redacted) as a JSON or YAML artifact, chosen by the file extension."""
        safe = redact_mapping(plain_config(dictionary))
        mlflow_client(self.tracking_uri).log_dict(self.run_id, safe, artifact_file)

    def log_image(self, image: Any, artifact_file: str) -> None:
        """Log a uint8 (H, W, 3) array or PIL image as a PNG artifact."""
        mlflow_client(self.tracking_uri).log_image(self.run_id, image, artifact_file=artifact_file)

    def log_artifact(self, local_path: str, artifact_path: str | None = None) -> None:
        mlflow_client(self.tracking_uri).log_artifact(self.run_id, local_path, artifact_path)

    def log_bytes(self, data: bytes, artifact_file: str) -> None:
        """Log ``data`` as the artifact ``artifact_file`` (e.g. ``plots/iu.png``).

        MLflow uploads from local files, so the bytes pass through a temporary folder.
        """
        folder, name = os.path.split(artifact_file)
        with tempfile.TemporaryDirectory(prefix="fcn-artifact-") as directory:
            path = os.path.join(directory, name)
            with open(path, "wb") as handle:
                handle.write(data)
            self.log_artifact(path, folder or None)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        mlflow_client(self.tracking_uri).log_batch(self.run_id, tags=[
            RunTag(key, str(value)) for key, value in redact_mapping(tags).items()])

    def log_inputs(self, inputs: Sequence[DataInput]) -> None:
        """Record the datasets the run read (`pipelines.io.lineage`), with their digests, as its MLflow inputs."""
        mlflow_client(self.tracking_uri).log_inputs(self.run_id, datasets=[
            dataclasses.replace(data, source=redact(data.source)).to_mlflow() for data in inputs])


class DisabledRun:
    """What ``start_run`` yields under ``--no-tracking``: the same methods, recording nothing."""

    run_id: str | None = None
    enabled = False

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        pass

    def log_params(self, params: Mapping[str, Any]) -> None:
        pass

    def log_dict(self, dictionary: Mapping[str, Any], artifact_file: str) -> None:
        pass

    def log_image(self, image: Any, artifact_file: str) -> None:
        pass

    def log_artifact(self, local_path: str, artifact_path: str | None = None) -> None:
        pass

    def log_bytes(self, data: bytes, artifact_file: str) -> None:
        pass

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        pass

    def log_inputs(self, inputs: Sequence[DataInput]) -> None:
        pass


@contextlib.contextmanager
def start_run(settings: TrackingSettings, run_name: str, params: Any, tags: Mapping[str, Any] | None = None,
              *, run_id: str | None = None) -> Iterator[TrackedRun | DisabledRun]:
    """Open an MLflow run in ``settings.experiment`` with ``params`` (a config) logged, redacted.

    With ``run_id`` (resuming an interrupted job), continue that run instead: its parameters stay
    as first logged. The run is this process's active MLflow run while the block runs, so
    ``log_checkpoint_model`` logs into it, and it ends FAILED if the block raises. Disabled settings
    yield a ``DisabledRun`` after saying once on stderr that nothing is recorded.
    """
    if not settings.enabled:
        print(f"{run_name}: tracking is off (--no-tracking); nothing of this run is recorded in MLflow",
              file=sys.stderr)
        yield DisabledRun()
        return
    check_tracking_server(settings.tracking_uri)
    notice = stray_store_notice(settings.tracking_uri)
    if notice:
        print(redact(notice), file=sys.stderr)
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_experiment(experiment_id=experiment_id(settings.tracking_uri, settings.experiment))
    safe_tags = {key: str(value) for key, value in redact_mapping(tags or {}).items()}
    # MLflow prints "View run ... at: <tracking URI>" when a run ends: a URI may carry a password.
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    with mlflow.start_run(run_id=run_id, run_name=None if run_id else run_name, tags=safe_tags) as active:
        if run_id is None:
            mlflow.log_params(flatten_params(params))
        yield TrackedRun(settings.tracking_uri, active.info.run_id)
