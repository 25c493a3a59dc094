"""The nightly schedule on one machine: infra/cron/fcn-nightly-label.crontab and infra/systemd/fcn-nightly-label.*.

The files are read as cron and systemd read them, their paths (the checkout in /opt/fcn-pipeline, new images in
/srv/photos/, what the nights write in /var/lib/fcn-nightly/) are swapped for temporary ones, and the commands
run for real in the environment cron or systemd gives them: HOME, PATH and what the file sets, nothing else.
Two nights on one state folder and one store: the systemd service's command labels the first images, then the
cron line, started from an unrelated working directory, labels the images added since.
"""
from __future__ import annotations

import fcntl
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from jobs import nightly_label
from pipelines.tracking.client import TrackingSettings
from pipelines.tracking.models import log_checkpoint_model
from pipelines.tracking.runs import start_run

REPO = Path(__file__).resolve().parents[2]
CRONTAB = REPO / "infra" / "cron" / "fcn-nightly-label.crontab"
SERVICE = REPO / "infra" / "systemd" / "fcn-nightly-label.service"
TIMER = REPO / "infra" / "systemd" / "fcn-nightly-label.timer"

# The files' paths, most specific first (the order they are replaced in).
PYTHON, CHECKOUT, PHOTOS, STATE = ("/opt/fcn-pipeline/.venv/bin/python", "/opt/fcn-pipeline", "/srv/photos",
                                   "/var/lib/fcn-nightly")
CRON_PATH = "/usr/bin:/bin"  # the PATH cron gives a job
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # the PATH systemd gives a service
# minute, hour, day of month, month, day of week
CRON_FIELD_RANGES = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]
SHELL_OPERATORS = {"&&", "||", ";", "|", ">", ">>", "2>&1"}


# --- reading the files as cron and systemd do --------------------------------------------------------


def read_crontab(text: str) -> tuple[dict[str, str], list[tuple[list[str], str]]]:
    """(variables, [(the five time fields, command)]) of a user crontab; comments and blank lines skipped."""
    variables, entries = {}, []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if assignment := re.fullmatch(r"([A-Za-z_]\w*)\s*=\s*(.*)", line):
            variables[assignment[1]] = assignment[2].strip("'\"")
        else:
            *fields, command = line.split(None, 5)
            entries.append((fields, command))
    return variables, entries


def cron_schedule_is_valid(fields: list[str]) -> bool:
    """Numbers, ranges, steps and lists within each field's range (no names such as `mon`, no `@daily`)."""
    if len(fields) != len(CRON_FIELD_RANGES):
        return False
    for field, (low, high) in zip(fields, CRON_FIELD_RANGES):
        for part in field.split(","):
            match = re.fullmatch(r"(?:\*|(\d+)(?:-(\d+))?)(?:/([1-9]\d*))?", part)
            if match is None:
                return False
            if match[1] is not None and not low <= int(match[1]) <= int(match[2] or match[1]) <= high:
                return False
    return True


def read_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """{section: {key: [values, in order]}} of a systemd unit file (a key may repeat, e.g. Environment=)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        assert not line.endswith("\\"), "no continued lines: this reader does not join them"
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
        else:
            key, _, value = line.partition("=")
            current.setdefault(key.strip(), []).append(value.strip())
    return sections


def job_arguments(words: list[str]) -> list[str]:
    """The arguments of jobs/nightly_label.py in a command's words, up to the first shell operator."""
    [start] = [index + 1 for index, word in enumerate(words) if word.endswith("/jobs/nightly_label.py")]
    arguments = []
    for word in words[start:]:
        if word in SHELL_OPERATORS:
            break
        arguments.append(word)
    return arguments


def on_this_machine(text: str, paths: dict[str, Path]) -> str:
    """The file's text with its paths replaced by this test's: the checkout is this one, Python this one."""
    local = {PYTHON: sys.executable, CHECKOUT: str(REPO), PHOTOS: str(paths["photos"]), STATE: str(paths["state"])}
    for placeholder, path in local.items():
        assert placeholder in text, f"the file no longer uses {placeholder}: update this test's paths"
        text = text.replace(placeholder, path)
    return text


# --- what the files say --------------------------------------------------------------------------------


def _cron_entry() -> tuple[list[str], str]:
    variables, entries = read_crontab(CRONTAB.read_text())
    assert variables == {}, "the store is set on the line itself, so the line can be copied alone"
    [entry] = entries
    return entry


def _service() -> dict[str, list[str]]:
    return read_unit(SERVICE.read_text())["Service"]


def _service_environment(service: dict[str, list[str]]) -> dict[str, str]:
    return dict(word.split("=", 1) for value in service.get("Environment", []) for word in shlex.split(value))


def test_both_forms_run_the_same_night_with_absolute_paths_and_the_store_set():
    fields, command = _cron_entry()
    assert "%" not in command, "cron turns % into a newline"
    cron_words = shlex.split(command)
    service = _service()
    [exec_start] = service["ExecStart"]
    assert "%" not in exec_start and "$" not in exec_start, "systemd expands % specifiers and $VARIABLES"
    assert exec_start[0] not in "-@:+!", "ExecStart without special prefixes"
    service_words = shlex.split(exec_start)

    # The same job with the same flags, run by the checkout's own virtualenv.
    cron_arguments, service_arguments = job_arguments(cron_words), job_arguments(service_words)
    parser = nightly_label.build_parser()
    assert parser.parse_args(cron_arguments) == parser.parse_args(service_arguments)
    assert {"--input", "--output", "--model-name"} <= set(cron_arguments)
    assert service_words[:2] == [PYTHON, f"{CHECKOUT}/jobs/nightly_label.py"]
    assert cron_words[cron_words.index(PYTHON) + 1] == f"{CHECKOUT}/jobs/nightly_label.py"

    # The same store, named in full (sqlite:////absolute/path), in both.
    [cron_store] = [word.split("=", 1)[1] for word in cron_words if word.startswith("MLFLOW_TRACKING_URI=")]
    assert cron_store == _service_environment(service)["MLFLOW_TRACKING_URI"]
    assert cron_store.startswith("sqlite:////")
    for word in [*cron_words, *service_words]:
        path = word.split("=", 1)[-1]
        assert "/" not in path or path.startswith("/") or "://" in path, f"a relative path: {word}"

    # Never twice at once: cron through flock -n on a lock file; systemd by itself (see the service's comment).
    assert cron_words[cron_words.index("flock"):cron_words.index("flock") + 2] == ["flock", "-n"]
    assert service["Type"] == ["oneshot"]  # "activating" until the job exits: a start meanwhile joins that run
    assert cron_schedule_is_valid(fields)


@pytest.mark.parametrize("fields", ["60 2 * * *", "0 24 * * *", "0 2 * *", "0 2 0 * *", "0 2-1 * * *",
                                    "0 2 * * mon", "*/0 2 * * *"])
def test_the_cron_field_check_rejects_what_cron_would(fields):
    assert not cron_schedule_is_valid(fields.split())


def test_every_form_starts_the_night_at_the_same_time():
    import yaml

    fields, _ = _cron_entry()
    [on_calendar] = read_unit(TIMER.read_text())["Timer"]["OnCalendar"]
    minute, hour = int(fields[0]), int(fields[1])
    assert fields[2:] == ["*", "*", "*"] and on_calendar == f"*-*-* {hour:02d}:{minute:02d}:00 UTC"
    for manifest in ("nightly-label.yaml", "nightly-label-raycronjob.yaml"):
        for document in yaml.safe_load_all((REPO / "infra" / "k8s" / manifest).read_text()):
            if document["kind"] in ("CronJob", "RayCronJob"):
                assert document["spec"]["schedule"].split() == fields, manifest


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_accepts_the_units_and_their_calendar(tmp_path):
    """`systemd-analyze verify` checks keys, values and that ExecStart's program exists: it runs on copies whose
    paths exist here, and must print nothing (an unknown key is only a warning)."""
    paths = {"photos": tmp_path / "photos", "state": tmp_path / "state"}
    for unit in (SERVICE, TIMER):
        text = unit.read_text()
        (tmp_path / unit.name).write_text(on_this_machine(text, paths) if unit == SERVICE else text)
    verified = subprocess.run(["systemd-analyze", "verify", "--man=no", str(tmp_path / TIMER.name),
                               str(tmp_path / SERVICE.name)], capture_output=True, text=True, timeout=60)
    assert verified.returncode == 0 and not verified.stdout + verified.stderr, verified.stdout + verified.stderr
    [on_calendar] = read_unit(TIMER.read_text())["Timer"]["OnCalendar"]
    calendar = subprocess.run(["systemd-analyze", "calendar", on_calendar], capture_output=True, text=True,
                              timeout=60)
    assert calendar.returncode == 0 and f"Normalized form: {on_calendar}" in calendar.stdout, calendar.stderr


# --- two real nights -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def champion_store(tmp_path_factory, tiny_checkpoint) -> Path:
    """A SQLite store whose registry has the files' --model-name at @champion (the tiny checkpoint)."""
    arguments = job_arguments(shlex.split(_cron_entry()[1]))
    model_name = arguments[arguments.index("--model-name") + 1]
    root = tmp_path_factory.mktemp("champion-store")
    previous = mlflow.get_tracking_uri()
    with start_run(TrackingSettings(tracking_uri=f"sqlite:///{root}/mlruns.db", experiment="register"),
                   "register", params={}):
        log_checkpoint_model(tiny_checkpoint, registered_model_name=model_name, alias="champion")
    mlflow.set_tracking_uri(previous)
    return root / "mlruns.db"


def _night(summary_path: Path, store: str, state: Path) -> dict:
    """The night's summary, after checking its MLflow run: finished, in the store, its artifacts in `state`."""
    summary = json.loads(summary_path.read_text())
    assert summary["error"] == 0 and summary["model"].endswith("@champion") and summary["model_version"] == "1"
    run = MlflowClient(store).get_run(summary["run_id"])
    assert run.info.status == "FINISHED" and run.data.metrics["processed_this_run"] == summary["processed_this_run"]
    assert Path(run.info.artifact_uri.removeprefix("file://")).is_relative_to(state), run.info.artifact_uri
    assert {"config.json", "review", "summary.json"} <= {item.path for item in MlflowClient(store).list_artifacts(
        run.info.run_id)}
    return summary


@pytest.mark.slow
@pytest.mark.integration
def test_two_nights_one_from_the_systemd_service_one_from_the_cron_line(champion_store, synthetic_corpus, tmp_path):
    paths = {name: tmp_path / name for name in ("photos", "state", "home", "systemd-cwd", "cron-cwd")}
    for path in paths.values():
        path.mkdir()
    shutil.copy(champion_store, paths["state"] / "mlruns.db")
    images = [Path(synthetic_corpus.root) / "JPEGImages" / f"{image_id}.jpg"
              for image_id in synthetic_corpus.train_ids[:4]]
    # The checkout's code, whichever checkout the test's virtualenv has installed (the file's .venv has its own).
    imports_this_checkout = {"PYTHONPATH": str(REPO)}

    # Night 1: the service's command and environment, as systemd starts it (from /, here from an empty folder).
    service = read_unit(on_this_machine(SERVICE.read_text(), paths))["Service"]
    environment = _service_environment(service)
    store = environment["MLFLOW_TRACKING_URI"]
    for image in images[:2]:
        shutil.copy(image, paths["photos"])
    assert "WorkingDirectory" not in service
    night = subprocess.run(shlex.split(service["ExecStart"][0]), cwd=paths["systemd-cwd"],
                           env={"HOME": str(paths["home"]), "PATH": SYSTEMD_PATH, **environment,
                                **imports_this_checkout}, capture_output=True, text=True, timeout=300)
    assert night.returncode == 0, night.stdout[-3000:] + night.stderr[-3000:]
    assert _night(paths["state"] / "labels" / "summary.json", store, paths["state"])["processed_this_run"] == 2

    # Night 2: the cron line, by /bin/sh from another working directory (cron starts in HOME), as cron runs it.
    _, command = read_crontab(on_this_machine(CRONTAB.read_text(), paths))[1][0]
    cron_env = {"HOME": str(paths["home"]), "PATH": CRON_PATH, **imports_this_checkout}
    for image in images[2:]:
        shutil.copy(image, paths["photos"])

    def cron_runs():
        return subprocess.run(["/bin/sh", "-c", command], cwd=paths["cron-cwd"], env=cron_env,
                              capture_output=True, text=True, timeout=300)

    log = paths["state"] / "nightly-label.log"
    with open(paths["state"] / "nightly-label.lock", "w") as lock:  # the previous night still running
        fcntl.flock(lock, fcntl.LOCK_EX)
        assert cron_runs().returncode == 75 and log.read_text() == ""  # the shell opened the log; nothing ran
    night = cron_runs()
    assert night.returncode == 0, log.read_text()[-4000:]
    summary = _night(paths["state"] / "labels" / "summary.json", store, paths["state"])
    assert summary["processed_this_run"] == 2 and summary["images"] == 4
    assert f"MLflow run: {summary['run_id']}" in log.read_text()
    for started_in in ("systemd-cwd", "cron-cwd"):  # nothing of a night lands where it was started
        assert list(paths[started_in].iterdir()) == [], started_in
    masks = paths["state"] / "labels" / "masks"
    assert sorted(mask.name for mask in masks.iterdir()) == sorted(f"{image.name}.png" for image in images)
    [experiment] = [e for e in MlflowClient(store).search_experiments() if e.name == "nightly_label"]
    assert len(MlflowClient(store).search_runs([experiment.experiment_id])) == 2
    assert list((paths["state"] / "labels" / "review").glob("date=*/index.html"))


def test_the_readme_shows_the_crontab_line_as_the_file_has_it():
    """The README's cron line is the one this file's tests run: copied by hand, it must not drift."""
    [line] = [line for line in CRONTAB.read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert f"\n{line}\n" in (REPO / "README.md").read_text()
