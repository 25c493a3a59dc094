"""Jobs that start together on one local SQLite MLflow store: all of them run, and the store stays usable.

Without a lock, MLflow's first use of a new ``mlruns.db`` runs its alembic migrations in every process
at once; the losers crash ("table ... already exists"), and a migration cut short leaves an
``_alembic_tmp_*`` table behind that makes every later job on that store fail. Real processes, real
MLflow, real SQLite: each worker does what a job does at start, released together by a file barrier.
"""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import pipelines
from pipelines.errors import TrackingUnavailableError
from pipelines.tracking.client import TrackingSettings, check_tracking_server, mlflow_client
from pipelines.tracking.runs import start_run

WORKERS = 3
TRIALS = 3  # without the lock, 2 of the 3 jobs crashed in every trial; a new store's migration takes seconds
EXPERIMENT = "store-race"

# One process per worker runs every trial, so that MLflow is imported once; each trial is a new store.
# The barrier (every worker's ready file exists) is crossed after the imports, so the workers really
# open the new store at the same moment. The outcome of a trial is "ok" or the error's first line.
_WORKER = textwrap.dedent("""
    import os, sys, time
    from pipelines.tracking.client import TrackingSettings, check_tracking_server
    from pipelines.tracking.models import get_model_version_by_alias
    from pipelines.tracking.runs import start_run

    root, experiment = sys.argv[1], sys.argv[5]
    worker, workers, trials = (int(value) for value in sys.argv[2:5])
    for trial in range(trials):
        folder = os.path.join(root, f"trial-{trial}")
        open(os.path.join(folder, f"ready-{worker}"), "w").close()
        while len([name for name in os.listdir(folder) if name.startswith("ready-")]) < workers:
            time.sleep(0.001)
        uri = f"sqlite:///{folder}/mlruns.db"
        try:
            check_tracking_server(uri)
            settings = TrackingSettings(tracking_uri=uri, experiment=experiment)
            with start_run(settings, f"worker-{worker}", {"worker": worker, "trial": trial}) as run:
                run.log_metrics({"loss": 1.0}, step=1)
                get_model_version_by_alias("fcn", "champion", tracking_uri=uri)  # the model registry's store
            outcome = "ok"
        except Exception as error:
            lines = str(error).strip().splitlines()
            outcome = f"{type(error).__name__}: {lines[0] if lines else ''}"[:300]
        with open(os.path.join(folder, f"outcome-{worker}"), "w") as handle:
            handle.write(outcome)
""")

# A job killed (out of memory, kill -9) in the middle of a new store's migration, right after MLflow
# created the temporary copy of a table it alters.
_KILLED_WHILE_MIGRATING = textwrap.dedent("""
    import os, sys, sqlalchemy
    from pipelines.tracking.client import check_tracking_server

    @sqlalchemy.event.listens_for(sqlalchemy.engine.Engine, "after_cursor_execute")
    def killed(connection, cursor, statement, *args):
        if statement.lstrip().startswith("CREATE TABLE _alembic_tmp_"):
            os._exit(9)

    check_tracking_server(sys.argv[1])
""")

_LATER_JOB = textwrap.dedent("""
    import sys
    from pipelines.tracking.client import TrackingSettings
    from pipelines.tracking.runs import start_run

    with start_run(TrackingSettings(tracking_uri=sys.argv[1], experiment="later"), "later", {}) as run:
        run.log_metrics({"loss": 1.0})
""")


pytestmark = pytest.mark.usefixtures("fresh_mlflow_globals")


def _python(code: str, *args: str, cwd: Path) -> subprocess.Popen:
    """``code`` in a new interpreter that imports this checkout's ``pipelines``, tracking to no server."""
    environment = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}
    checkout = str(Path(pipelines.__file__).resolve().parents[1])
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [checkout, environment.get("PYTHONPATH")]))
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=cwd, env=environment,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _leftover_tables(database: Path) -> list[str]:
    with sqlite3.connect(database) as connection:
        names = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return sorted(name for (name,) in names if name.startswith("_alembic_tmp_"))


@pytest.mark.slow
def test_jobs_starting_together_on_a_new_sqlite_store_all_run_and_leave_it_usable(tmp_path):
    for trial in range(TRIALS):
        (tmp_path / f"trial-{trial}").mkdir()
    workers = [_python(_WORKER, str(tmp_path), str(worker), str(WORKERS), str(TRIALS), EXPERIMENT, cwd=tmp_path)
               for worker in range(WORKERS)]
    logs = [process.communicate(timeout=300)[0] for process in workers]
    assert [process.returncode for process in workers] == [0] * WORKERS, "\n".join(logs)

    failures = []
    for trial in range(TRIALS):
        folder = tmp_path / f"trial-{trial}"
        for worker in range(WORKERS):
            outcome = (folder / f"outcome-{worker}").read_text()
            if outcome != "ok":
                failures.append(f"trial {trial}, worker {worker}: {outcome}")
        leftovers = _leftover_tables(folder / "mlruns.db")
        if leftovers:
            failures.append(f"trial {trial}: leftover tables {leftovers}")
        uri = f"sqlite:///{folder}/mlruns.db"
        try:  # a later job on the same store
            check_tracking_server(uri)
            with start_run(TrackingSettings(tracking_uri=uri, experiment=EXPERIMENT), "later", {"later": True}):
                pass
        except Exception as error:
            failures.append(f"trial {trial}, later job: {type(error).__name__}: {str(error).splitlines()[0]}")
            continue
        experiment = mlflow_client(uri).get_experiment_by_name(EXPERIMENT)
        runs = mlflow_client(uri).search_runs([experiment.experiment_id])
        finished = sorted(run.info.run_name for run in runs if run.info.status == "FINISHED")
        if finished != sorted([*(f"worker-{worker}" for worker in range(WORKERS)), "later"]):
            failures.append(f"trial {trial}: finished runs {finished}")
    assert not failures, f"{len(failures)} problems in {TRIALS} trials of {WORKERS} jobs:\n" + "\n".join(failures)


@pytest.mark.slow
def test_a_store_left_half_migrated_is_a_one_line_error_that_says_how_to_recover(tmp_path):
    database = tmp_path / "mlruns.db"
    uri = f"sqlite:///{database}"
    killed = _python(_KILLED_WHILE_MIGRATING, uri, cwd=tmp_path)
    log = killed.communicate(timeout=300)[0]
    assert killed.returncode == 9, log
    leftovers = _leftover_tables(database)
    assert leftovers, "the killed job left no temporary table: nothing to recover from"

    with pytest.raises(TrackingUnavailableError, match="half-built") as caught:
        check_tracking_server(uri)
    message = str(caught.value)
    assert "\n" not in message and all(name in message for name in leftovers)
    assert f"delete {database} if it holds no runs you need" in message

    database.unlink()  # what the message says to do; then a new job (a new process) runs
    later = _python(_LATER_JOB, uri, cwd=tmp_path)
    log = later.communicate(timeout=300)[0]
    assert later.returncode == 0, log
    assert _leftover_tables(database) == []
