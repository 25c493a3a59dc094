"""pipelines.tracking.client and pipelines.tracking.models: local SQLite default, a real MLflow server, redaction."""
import dataclasses
import fcntl
import json
import pickle
import socket
import threading
import time
from pathlib import Path

import mlflow
import pytest
import torch

from fcn_core.checkpoint import load_checkpoint
from infra.local.services import free_port
from pipelines.errors import ModelReferenceError, TrackingUnavailableError
from pipelines.tracking.client import TrackingSettings, check_tracking_server, mlflow_client
from pipelines.tracking.models import (
    CHECKPOINT_IN_MODEL,
    FIRST_CHAMPION_REASON,
    get_model_version_by_alias,
    log_checkpoint_model,
    resolve_model_reference,
    set_model_alias,
)
from pipelines.tracking.redaction import MASK, MAX_PARAM_VALUE_LENGTH, flatten_params, is_secret_name, redact
from pipelines.tracking.references import check_reference
from pipelines.tracking.runs import DisabledRun, start_run
from pipelines.tracking.store import resolve_tracking_uri

SECRET = "s3cr3t-Value-that-must-never-be-logged"


pytestmark = pytest.mark.usefixtures("fresh_mlflow_globals")


@pytest.fixture
def local_store(tmp_path, monkeypatch):
    """No MLFLOW_TRACKING_URI: the zero-infrastructure default, the per-user store (under a temporary
    XDG_DATA_HOME), whatever the working directory. Returns the folder the store goes in."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data-home"))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    return tmp_path / "data-home" / "fcn-pipeline"


@pytest.fixture(params=["local", pytest.param("server", marks=pytest.mark.integration)])
def backend(request, monkeypatch, tmp_path):
    """The same calls against the local SQLite default and against a real server with S3 artifacts."""
    monkeypatch.chdir(tmp_path)
    if request.param == "local":
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
        monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data-home"))
    else:
        server = request.getfixturevalue("mlflow_server")
        monkeypatch.setenv("MLFLOW_TRACKING_URI", server.tracking_uri)
    return request.param


# --- settings, redaction, parameters -------------------------------------------------------------


def test_tracking_uri_defaults_to_the_per_user_store_and_follows_the_environment(local_store, monkeypatch, tmp_path):
    assert resolve_tracking_uri() == f"sqlite:///{local_store / 'mlruns.db'}"
    monkeypatch.chdir(tmp_path)  # the working directory does not change the store
    assert TrackingSettings().tracking_uri == f"sqlite:///{local_store / 'mlruns.db'}"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_tracking_uri() == f"sqlite:///{tmp_path}/home/.local/share/fcn-pipeline/mlruns.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    assert TrackingSettings(experiment="x").tracking_uri == "http://mlflow.example:5000"


def test_redact_masks_environment_secrets_and_url_passwords(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "tok-0123456789")
    monkeypatch.setenv("SOME_FLAG_TOKEN", "true")  # too short to be treated as a secret
    text = f"endpoint https://user:hunter22@s3.example/x key={SECRET} auth tok-0123456789 ok=true"
    assert redact(text) == "endpoint https://user:***@s3.example/x key=*** auth *** ok=true"


@pytest.mark.parametrize("name, secret", [
    ("aws_secret_access_key", True), ("MLFLOW_TRACKING_PASSWORD", True), ("s3.api_key", True),
    ("accessKey", True), ("auth_token", True), ("key_prefix", False), ("AWS_ACCESS_KEY_ID", False),
    ("keys", False), ("lr", False)])
def test_secret_names(name, secret):
    assert is_secret_name(name) is secret


@dataclasses.dataclass
class _Storage:
    endpoint: str
    secret_key: str


@dataclasses.dataclass
class _Config:
    lr: float
    storage: _Storage
    classes: tuple
    notes: str
    extra: dict


def test_flatten_params_nests_with_dots_redacts_and_truncates(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    config = _Config(lr=0.001, storage=_Storage("http://127.0.0.1:9000", SECRET), classes=("bg", "cat"),
                     notes="x" * (MAX_PARAM_VALUE_LENGTH + 10), extra={"path": Path("/data"), "nested": {"k": 1},
                                                                       "uri": f"s3://bucket/{SECRET}"})
    params = flatten_params(config)
    assert params["lr"] == "0.001"
    assert params["storage.endpoint"] == "http://127.0.0.1:9000"
    assert params["storage.secret_key"] == MASK
    assert params["classes"] == "['bg', 'cat']"
    assert params["extra.path"] == "/data"
    assert params["extra.nested.k"] == "1"
    assert params["extra.uri"] == f"s3://bucket/{MASK}"
    assert len(params["notes"]) == MAX_PARAM_VALUE_LENGTH and params["notes"].endswith("[truncated]")
    assert SECRET not in json.dumps(params)
    assert flatten_params({}) == {} and flatten_params({"empty": {}}) == {"empty": "{}"}


# --- server checks and disabled tracking ---------------------------------------------------------


def test_unreachable_server_fails_fast_with_a_clear_message():
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    with pytest.raises(TrackingUnavailableError, match="unreachable.*--no-tracking") as caught:
        check_tracking_server(uri)
    assert time.monotonic() - started < 15
    assert uri in str(caught.value) and "\n" not in str(caught.value)


def test_silent_server_times_out_instead_of_hanging():
    """A port that accepts connections but never answers: the timeout, not MLflow's retries, decides."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        uri = f"http://127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(TrackingUnavailableError):
            check_tracking_server(uri, timeout_s=2)
        assert time.monotonic() - started < 10


def test_start_run_with_unreachable_server_raises_before_the_block(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    entered = []
    with pytest.raises(TrackingUnavailableError):
        with start_run(TrackingSettings(), "job", params={}):
            entered.append(True)
    assert not entered


def test_a_local_store_is_created_only_under_the_lock_beside_it(local_store):
    """Jobs that start together take turns creating the store (see tests/reliability/test_mlflow_store_race.py)."""
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401  (so the check reaches the lock at once)

    uri, outcome = resolve_tracking_uri(), []
    checker = threading.Thread(target=lambda: outcome.append(check_tracking_server(uri)))
    local_store.mkdir(parents=True)
    with open(local_store / "mlruns.db.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        checker.start()
        time.sleep(1)
        assert not outcome and not (local_store / "mlruns.db").exists()
    checker.join(timeout=300)
    assert outcome == [None] and (local_store / "mlruns.db").exists()


def test_disabled_tracking_says_so_once_and_records_nothing(local_store, capsys):
    with start_run(TrackingSettings(enabled=False), "job", params={"a": 1}) as run:
        assert isinstance(run, DisabledRun) and run.run_id is None and not run.enabled
        run.log_metrics({"loss": 1.0}, step=1)
        run.log_dict({"a": 1}, "config.json")
        run.set_tags({"t": "v"})
    assert capsys.readouterr().err.count("tracking is off") == 1
    assert not (local_store / "mlruns.db").exists()


# --- runs: parameters, tags, metrics, artifacts --------------------------------------------------


@pytest.mark.slow
def test_run_logs_everything_but_secrets(backend, monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    settings = TrackingSettings(experiment=f"tracking-test-{backend}")
    params = {"lr": 0.01, "storage": {"endpoint": "http://s3.local", "secret_key": SECRET},
              "input": f"s3://ak:{SECRET}@bucket/images"}
    with start_run(settings, "secret-scan", params=params, tags={"token": SECRET, "kind": "test"}) as run:
        run.log_metrics({"loss": 0.5}, step=3)
        run.set_tags({"note": f"uses {SECRET}", "password": SECRET})
        run.log_dict({"credentials": {"password": SECRET}, "note": f"uses {SECRET}"}, "config.json")
        pickle.loads(pickle.dumps(run)).log_metrics({"from_worker": 1.0})  # what Ray Train's rank 0 gets
        run_id = run.run_id

    client = mlflow_client()
    logged = client.get_run(run_id)
    assert logged.info.status == "FINISHED"
    if backend == "server":  # artifacts go through the server's proxy: the client needs no S3 access
        assert logged.info.artifact_uri.startswith("mlflow-artifacts:/")
    assert logged.data.params["lr"] == "0.01" and logged.data.params["storage.secret_key"] == MASK
    assert logged.data.tags["kind"] == "test" and logged.data.tags["token"] == logged.data.tags["password"] == MASK
    assert logged.data.tags["note"] == f"uses {MASK}"
    assert logged.data.metrics == {"loss": 0.5, "from_worker": 1.0}
    downloaded = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="",
                                                          dst_path=str(tmp_path / "artifacts"),
                                                          tracking_uri=settings.tracking_uri))
    assert json.loads((downloaded / "config.json").read_text())["credentials"]["password"] == MASK
    artifact_bytes = b"".join(p.read_bytes() for p in downloaded.rglob("*") if p.is_file())
    everything = json.dumps([logged.data.params, logged.data.tags]).encode() + artifact_bytes
    assert SECRET.encode() not in everything


@pytest.mark.slow
def test_failed_block_ends_the_run_failed(local_store):
    with pytest.raises(RuntimeError, match="boom"):
        with start_run(TrackingSettings(), "failing", params={}) as run:
            raise RuntimeError("boom")
    assert mlflow_client().get_run(run.run_id).info.status == "FAILED"


@pytest.mark.slow
def test_resuming_continues_the_same_run(local_store):
    settings = TrackingSettings()
    with pytest.raises(KeyboardInterrupt):
        with start_run(settings, "train", params={"lr": 0.1}) as first:
            first.log_metrics({"loss": 1.0}, step=1)
            raise KeyboardInterrupt
    with start_run(settings, "train", params={"lr": 0.1}, run_id=first.run_id) as resumed:
        resumed.log_metrics({"loss": 0.5}, step=2)
    assert resumed.run_id == first.run_id
    client = mlflow_client()
    assert client.get_run(first.run_id).info.status == "FINISHED"
    assert [m.value for m in client.get_metric_history(first.run_id, "loss")] == [1.0, 0.5]


# --- models: logging, registering, resolving references ------------------------------------------


def _same_weights(path_a, path_b) -> bool:
    a, b = load_checkpoint(path_a), load_checkpoint(path_b)
    return a.spec == b.spec and list(a.class_names) == list(b.class_names) and all(
        torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()))


@pytest.mark.slow
def test_logged_checkpoint_model_resolves_from_every_reference(backend, tiny_checkpoint, tmp_path):
    name = f"fcn-tiny-{backend}-{time.time_ns()}"
    with start_run(TrackingSettings(experiment="models-test"), "train", params={}) as run:
        first = log_checkpoint_model(tiny_checkpoint, registered_model_name=name, alias="candidate")
        second = log_checkpoint_model(tiny_checkpoint, artifact_path="again",
                                               registered_model_name=name)
        run.log_artifact(tiny_checkpoint, "checkpoints")
    assert (first.name, first.version, second.version) == (name, "1", "2")
    assert first.model_uri == f"models:/{name}/1"

    references = {f"models:/{name}@candidate": ("1", first.run_id), f"models:/{name}/2": ("2", first.run_id),
                  first.model_uri: ("1", first.run_id), f"runs:/{first.run_id}/model": (None, first.run_id),
                  f"runs:/{first.run_id}/checkpoints/{Path(tiny_checkpoint).name}": (None, first.run_id),
                  tiny_checkpoint: (None, None)}
    for reference, (version, run_id) in references.items():
        resolved = resolve_model_reference(reference, download_dir=str(tmp_path / "dl"))
        assert (resolved.reference, resolved.version, resolved.run_id) == (reference, version, run_id)
        assert _same_weights(resolved.checkpoint_path, tiny_checkpoint), reference
    assert resolve_model_reference(tiny_checkpoint).checkpoint_path == tiny_checkpoint  # used in place

    model_dir = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/1", dst_path=str(tmp_path / "m")))
    assert (model_dir / "data" / "model.pt2").is_file()  # the exported graph, not a pickle
    assert (model_dir / CHECKPOINT_IN_MODEL).is_file() and (model_dir / "input_example.json").is_file()


@pytest.mark.slow
def test_aliases_move_and_missing_ones_read_as_none(local_store, tiny_checkpoint):
    with start_run(TrackingSettings(), "train", params={}):
        logged = log_checkpoint_model(tiny_checkpoint, registered_model_name="fcn")
        log_checkpoint_model(tiny_checkpoint, artifact_path="model2", registered_model_name="fcn")
    assert get_model_version_by_alias("fcn", "candidate") is None
    assert get_model_version_by_alias("no-such-model", "champion") is None
    set_model_alias("fcn", "candidate", logged.version)
    assert get_model_version_by_alias("fcn", "candidate") == "1"
    set_model_alias("fcn", "candidate", "2")
    assert get_model_version_by_alias("fcn", "candidate") == "2"


@pytest.mark.slow
def test_a_names_first_version_becomes_its_champion_and_later_ones_do_not(local_store, tiny_checkpoint):
    with start_run(TrackingSettings(), "train", params={}):
        first = log_checkpoint_model(tiny_checkpoint, registered_model_name="fcn", alias="candidate")
        second = log_checkpoint_model(tiny_checkpoint, artifact_path="model2", registered_model_name="fcn",
                                      alias="candidate")
    assert get_model_version_by_alias("fcn", "champion") == first.version == "1"
    assert get_model_version_by_alias("fcn", "candidate") == second.version == "2"
    tags = mlflow_client().get_model_version("fcn", "1").tags
    assert tags["champion_reason"] == FIRST_CHAMPION_REASON
    assert "champion_reason" not in mlflow_client().get_model_version("fcn", "2").tags


def test_registry_references_into_a_missing_store_name_it_and_create_nothing(local_store):
    for reference in ("models:/fcn@champion", "runs:/0123456789abcdef/model"):
        with pytest.raises(ModelReferenceError) as caught:
            resolve_model_reference(reference)
        message = str(caught.value)
        assert message.startswith(f"{reference}: the MLflow store sqlite:///{local_store / 'mlruns.db'} (the default")
        assert "does not exist" in message and "MLFLOW_TRACKING_URI" in message and "\n" not in message
    assert not local_store.exists()


@pytest.mark.slow
def test_bad_references_fail_with_one_line_naming_them(local_store, tiny_checkpoint, tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a checkpoint")
    with start_run(TrackingSettings(), "train", params={}) as run:
        log_checkpoint_model(tiny_checkpoint, registered_model_name="fcn")
        run.log_artifact(str(folder), "folder")
    mlflow_client().create_registered_model("empty")  # a name registered by other tools: no versions, no champion
    bad = {"models:/empty@champion": "no alias 'champion'; point it at a version with: python "
                                     "jobs/compare_models.py --models models:/empty/VERSION",
           "models:/fcn@nope": "no alias 'nope'; point it at a version with",
           "models:/fcn/9": "no version 9",
           "models:/missing@champion": "no registered model named 'missing' in the MLflow store .* "
                                       "register one with train_fcn.py --register-as missing",
           "models:/fcn": "expected models:/NAME@ALIAS", "runs:/0123456789abcdef/model": "no run with id",
           f"runs:/{run.run_id}/nothing-here": "no checkpoint there",
           f"runs:/{run.run_id}": "expected runs:/RUN_ID/PATH",
           f"runs:/{run.run_id}/folder": "is a directory",
           str(tmp_path / "missing.pt"): "no checkpoint file"}
    answered_without_mlflow = []
    for reference, reason in bad.items():
        with pytest.raises(ModelReferenceError, match=reason) as caught:
            resolve_model_reference(reference, download_dir=str(tmp_path / "dl"))
        assert str(caught.value).startswith(reference) and "\n" not in str(caught.value)
        # The quick check (SQLite tables, no MLflow) says exactly the same, or leaves the answer to MLflow.
        try:
            check_reference(reference, resolve_tracking_uri())
        except ModelReferenceError as quick:
            assert str(quick) == str(caught.value)
            answered_without_mlflow.append(reference)
    assert answered_without_mlflow == ["models:/empty@champion", "models:/fcn@nope", "models:/missing@champion",
                                       "models:/fcn"]
    check_reference("models:/fcn@champion", resolve_tracking_uri())  # what exists passes


def test_the_quick_reference_check_imports_no_mlflow_and_leaves_unknown_stores_to_it(tmp_path):
    import sqlite3
    import subprocess
    import sys

    not_a_registry = tmp_path / "other.db"
    sqlite3.connect(not_a_registry).close()  # an empty database: no registry tables to read
    uri = f"sqlite:///{not_a_registry}"
    check_reference("models:/fcn@champion", uri)  # unknown: MLflow answers it later
    check_reference("models:/fcn@champion", "http://127.0.0.1:9")  # a server: likewise
    probe = ("import sys\nfrom pipelines.tracking.references import check_reference\n"
             f"check_reference('models:/fcn@champion', {uri!r})\nprint('mlflow' in sys.modules)")
    imported = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert imported.stdout.strip() == "False"


def test_log_checkpoint_model_needs_an_active_run(tiny_checkpoint):
    with pytest.raises(RuntimeError, match="inside `with start_run"):
        log_checkpoint_model(tiny_checkpoint)


@pytest.mark.integration
@pytest.mark.slow
def test_checkpoint_on_s3_resolves_to_a_local_copy(s3_server, tiny_checkpoint, tmp_path):
    s3_server.create_bucket("tracking-models")
    s3_server.client().upload_file(tiny_checkpoint, "tracking-models", "runs/7/best.pt")
    resolved = resolve_model_reference("s3://tracking-models/runs/7/best.pt",
                                                download_dir=str(tmp_path / "dl"))
    path = Path(resolved.checkpoint_path)
    assert path.name == "best.pt" and path.parent.parent == tmp_path / "dl"
    assert _same_weights(path, tiny_checkpoint)
    with pytest.raises(ModelReferenceError, match="no checkpoint file"):
        resolve_model_reference("s3://tracking-models/runs/7/missing.pt")


def test_a_store_left_in_the_working_directory_is_pointed_at(local_store, capsys):
    """Before 2026-12 the default store was ./mlruns.db: a team that has one is told how to keep using it."""
    Path("mlruns.db").write_bytes(b"")
    here = Path("mlruns.db").absolute()
    with pytest.raises(ModelReferenceError, match=f"export MLFLOW_TRACKING_URI=sqlite:///{here}$"):
        resolve_model_reference("models:/fcn@champion")
    with start_run(TrackingSettings(), "job", params={}):
        pass
    assert capsys.readouterr().err.strip() == (f"note: {here} is not used: jobs use sqlite:///{local_store}/mlruns.db; "
                                               f"to keep using the store in this folder, export "
                                               f"MLFLOW_TRACKING_URI=sqlite:///{here}")
