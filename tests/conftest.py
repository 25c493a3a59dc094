"""Shared pytest set-up: real services are started by the fixture modules below, once per session."""
import os
import tempfile

# Keep each test process from oversubscribing the two cores of a CI machine.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
# One authentication mode for every Ray runtime this process starts or joins. Ray reads the mode
# once per process (and `ray.init()` switches an unset mode to "token"), so flipping it between
# tests leaves the driver and a new GCS disagreeing. Token auth is covered end to end by the
# `ray job submit` tests, whose local stack sets RAY_AUTH_MODE=token for its own processes.
os.environ["RAY_AUTH_MODE"] = "disabled"
# Runs and registry lookups of tests that do not choose a store go to a store of their own, never to
# an mlruns.db left in the checkout (whose state would differ between a developer's tree and CI).
if not os.environ.get("MLFLOW_TRACKING_URI"):
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tempfile.mkdtemp(prefix='fcn-tests-mlflow-')}/mlruns.db"

def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` run only where CUDA is visible (a lent GPU machine), and are skipped elsewhere."""
    import pytest
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA; no GPU visible")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


pytest_plugins = [
    "tests.fixtures.ray_cluster",
    "tests.fixtures.s3_server",
    "tests.fixtures.mlflow_server",
    "tests.fixtures.corpus",
    "tests.fixtures.gcs_server",
    "tests.fixtures.backends",
    "tests.fixtures.local_stack",
    "tests.fixtures.models",
]
