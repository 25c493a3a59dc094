"""Shared pytest set-up: real services are started by the fixture modules below, once per session."""
import os

# Keep each test process from oversubscribing the two cores of a CI machine.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

pytest_plugins = [
    "tests.fixtures.ray_cluster",
    "tests.fixtures.s3_server",
    "tests.fixtures.mlflow_server",
    "tests.fixtures.corpus",
    "tests.fixtures.local_stack",
    "tests.fixtures.models",
]
