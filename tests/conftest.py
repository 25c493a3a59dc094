"""Shared pytest set-up: real services are started by the fixture modules below, once per session."""
import os
import tempfile

import pytest

# Keep each test process from oversubscribing the two cores of a CI machine.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
# One authentication mode for every Ray runtime this process starts or joins. Ray reads the mode
# once per process (and `ray.init()` switches an unset mode to "token"), so flipping it between
# tests leaves the driver and a new GCS disagreeing. Token auth is covered end to end by the
# `ray job submit` tests, whose local stack sets RAY_AUTH_MODE=token for its own processes.
os.environ["RAY_AUTH_MODE"] = "disabled"
# Runs and registry lookups of tests that do not choose a store go to a store of their own, never to
# the developer's own default store (whose state would differ between a developer's machine and CI);
# tests that unset MLFLOW_TRACKING_URI to test the default find it under a temporary XDG_DATA_HOME.
os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="fcn-tests-data-home-")
if not os.environ.get("MLFLOW_TRACKING_URI"):
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tempfile.mkdtemp(prefix='fcn-tests-mlflow-')}/mlruns.db"

_EXIT_STATUS = "fcn_exit_status"


def pytest_sessionfinish(session, exitstatus):
    setattr(session.config, _EXIT_STATUS, int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """End the test process once pytest is done, without the interpreter's teardown.

    This one process hosts a Ray driver, delta-rs and DuckDB, fsspec's event-loop threads, torch and
    MLflow. Two full runs (of about four) ended with a segmentation fault *after* every test had passed
    and the summary was printed: in a native library's teardown while Python finalised its modules,
    where nothing reports which. The jobs themselves exit cleanly (tests/jobs/test_export_labels.py runs
    one twenty times in fresh processes). So after pytest's own unconfigure: stop Ray (its processes
    would outlive an abrupt exit), flush, and exit with pytest's status. A crash in that shutdown still
    shows, with a traceback from faulthandler.
    """
    import faulthandler
    import logging
    import sys

    status = getattr(config, _EXIT_STATUS, None)
    if status is None:  # pytest stopped before the session ran (a usage error): let it exit as it does
        return
    faulthandler.enable()
    import ray

    if ray.is_initialized():
        ray.shutdown()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` run only where CUDA is visible (a lent GPU machine), and are skipped elsewhere."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA; no GPU visible")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def pytest_collection_finish(session):
    """Start the services that the collected tests need in the background (see `tests.fixtures.early_start`),
    one after another in the order the tests first need them."""
    if session.config.option.collectonly:
        return
    from infra.local.seaweedfs import start_seaweedfs
    from infra.local.services import stop_session
    from tests.fixtures.early_start import start_early
    from tests.fixtures.gcs_server import start_fake_gcs
    from tests.fixtures.local_stack import start_local_stack, stop_local_stack
    from tests.fixtures.mlflow_server import start_test_mlflow

    temp, started = session.config._tmp_path_factory, {}
    # Made here, before the background starts below, so that they and the first test's tmp_path never race
    # to create it (with --basetemp left from an earlier run, the loser failed with FileExistsError).
    temp.getbasetemp()
    services = {  # fixture: (start, stop); the MLflow server's artifacts go to the S3 server, started before it
        "s3_server": (lambda: start_seaweedfs(temp.mktemp("seaweedfs")), lambda server: server.stop()),
        "mlflow_server": (lambda: start_test_mlflow(started["s3_server"].result(), temp.mktemp("mlflow-server")),
                          lambda server: stop_session(server.pid)),
        "gcs_server": (lambda: start_fake_gcs(temp.mktemp("fake-gcs")), lambda server: server.stop()),
        "local_stack": (lambda: start_local_stack(temp.mktemp("local-stack")), stop_local_stack),
    }
    for item in session.items:
        for name in services:
            if name not in started and name in getattr(item, "fixturenames", ()):
                started[name] = start_early(name, *services[name])


pytest_plugins = [
    "tests.fixtures.early_start",
    "tests.fixtures.ray_cluster",
    "tests.fixtures.s3_server",
    "tests.fixtures.mlflow_server",
    "tests.fixtures.corpus",
    "tests.fixtures.gcs_server",
    "tests.fixtures.backends",
    "tests.fixtures.local_stack",
    "tests.fixtures.models",
]
