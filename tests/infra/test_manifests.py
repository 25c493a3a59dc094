"""infra/: every manifest parses, has what its kind requires, holds no secret, and runs real jobs.

Each RayJob entrypoint (also the one the nightly CronJob creates from its ConfigMap, and the RayCronJob's
template) is parsed with its job's own ``build_parser()``, so a renamed or removed flag breaks this test,
not a night. The CronJob pod's script runs for real, against a stand-in for ``kubectl``.
"""
import importlib
import json
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from pipelines.tracking.redaction import is_secret_name

INFRA = Path(__file__).resolve().parents[2] / "infra"
K8S_FILES = sorted((INFRA / "k8s").glob("*.yaml"))
RAY_UP_FILES = sorted((INFRA / "ray-up").glob("*.yaml"))


def _documents(path: Path) -> list[dict]:
    documents = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    assert documents and all(isinstance(doc, dict) for doc in documents), path
    return documents


def _k8s_objects() -> list[tuple[str, dict]]:
    """(where, object) for every Kubernetes object, including RayJob templates kept in ConfigMaps."""
    objects = []
    for path in K8S_FILES:
        for doc in _documents(path):
            objects.append((path.name, doc))
            if doc.get("kind") == "ConfigMap":
                for key, text in doc.get("data", {}).items():
                    embedded = yaml.safe_load(text)
                    if isinstance(embedded, dict) and "apiVersion" in embedded:
                        objects.append((f"{path.name}:{doc['metadata']['name']}/{key}", embedded))
    return objects


OBJECTS = _k8s_objects()


def _of_kind(kind: str) -> list[tuple[str, dict]]:
    return [(where, obj) for where, obj in OBJECTS if obj["kind"] == kind]


# The fields the API server (or the KubeRay operator) cannot do without, per kind.
REQUIRED_FIELDS = {
    "RayCluster": ["spec.rayVersion", "spec.headGroupSpec.rayStartParams",
                   "spec.headGroupSpec.template.spec.containers", "spec.workerGroupSpecs"],
    "RayJob": ["spec.entrypoint", "spec.clusterSelector"],
    "RayCronJob": ["spec.schedule", "spec.jobTemplate.entrypoint", "spec.jobTemplate.clusterSelector"],
    "CronJob": ["spec.schedule", "spec.jobTemplate.spec.template.spec.containers",
                "spec.jobTemplate.spec.template.spec.restartPolicy"],
    "Deployment": ["spec.selector.matchLabels", "spec.template.metadata.labels", "spec.template.spec.containers"],
    "Service": ["spec.selector", "spec.ports"],
    "ConfigMap": ["data"],
    "ServiceAccount": [],
    "Role": ["rules"],
    "RoleBinding": ["roleRef.kind", "roleRef.name", "subjects"],
}


def _field(obj: dict, dotted: str):
    for part in dotted.split("."):
        obj = obj[part]
    return obj


def _pod_specs(obj: dict) -> list[dict]:
    spec = obj.get("spec", {})
    if obj["kind"] == "RayCluster":
        return [spec["headGroupSpec"]["template"]["spec"]] + [g["template"]["spec"] for g in spec["workerGroupSpecs"]]
    if obj["kind"] == "Deployment":
        return [spec["template"]["spec"]]
    if obj["kind"] == "CronJob":
        return [spec["jobTemplate"]["spec"]["template"]["spec"]]
    return []


def test_infra_has_the_manifests_the_issue_asks_for():
    kinds = {obj["kind"] for _, obj in OBJECTS}
    assert {"RayCluster", "RayJob", "RayCronJob", "CronJob", "Deployment", "Service"} <= kinds
    assert RAY_UP_FILES


@pytest.mark.parametrize("where, obj", OBJECTS, ids=[f"{w}:{o['kind']}" for w, o in OBJECTS])
def test_every_object_has_its_required_fields_and_no_literal_secret(where, obj):
    assert obj["apiVersion"] and obj["kind"] in REQUIRED_FIELDS, f"{where}: unexpected kind {obj['kind']}"
    assert obj["metadata"].get("name") or obj["metadata"].get("generateName"), where
    for dotted in REQUIRED_FIELDS[obj["kind"]]:
        try:
            _field(obj, dotted)
        except (KeyError, TypeError):
            pytest.fail(f"{where}: {obj['kind']} lacks {dotted}")
    assert obj["kind"] != "Secret", f"{where}: secrets are created out of band and referenced by name"
    if obj["kind"] == "ConfigMap":
        assert not [key for key in obj["data"] if is_secret_name(key)], f"{where}: a secret in a ConfigMap"
    for pod in _pod_specs(obj):
        assert pod["containers"], where
        for container in pod["containers"]:
            assert container["image"], where
            for variable in container.get("env", []):
                if is_secret_name(variable["name"]):
                    assert "secretKeyRef" in variable.get("valueFrom", {}), f"{where}: {variable['name']}"


def test_ray_cluster_autoscales_cpu_and_gpu_groups_with_token_auth():
    [(_, cluster)] = _of_kind("RayCluster")
    spec = cluster["spec"]
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["authOptions"]["mode"] == "token" and spec["authOptions"]["secretName"]
    gpu_groups = []
    for group in spec["workerGroupSpecs"]:
        assert group["groupName"] and 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        assert group["maxReplicas"] > group["minReplicas"], "the autoscaler needs room to grow"
        limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
        gpu_groups.append("nvidia.com/gpu" in limits)
    assert True in gpu_groups and False in gpu_groups


def _ray_job_specs() -> list[tuple[str, dict]]:
    """(where, RayJob spec) of every RayJob, and of the RayJob template of every RayCronJob."""
    return ([(where, job["spec"]) for where, job in _of_kind("RayJob")]
            + [(f"{where}:jobTemplate", cron["spec"]["jobTemplate"]) for where, cron in _of_kind("RayCronJob")])


def _runtime_env_vars(spec: dict) -> dict:
    return yaml.safe_load(spec.get("runtimeEnvYAML") or "{}").get("env_vars", {})


def _cluster_env() -> dict:
    """The ConfigMap every node of the cluster loads its environment from (``envFrom``)."""
    [(_, cluster)] = _of_kind("RayCluster")
    names = {source["configMapRef"]["name"] for pod in _pod_specs(cluster) for container in pod["containers"]
             for source in container.get("envFrom", []) if "configMapRef" in source}
    [name] = names
    [config_map] = [obj for _, obj in _of_kind("ConfigMap") if obj["metadata"]["name"] == name]
    return config_map


@pytest.mark.parametrize("where, spec", _ray_job_specs(), ids=[w for w, _ in _ray_job_specs()])
def test_ray_jobs_select_the_cluster_defined_here(where, spec):
    [(_, cluster)] = _of_kind("RayCluster")
    assert spec["entrypoint"].strip()
    assert spec["clusterSelector"] == {"ray.io/cluster": cluster["metadata"]["name"]}, where


def test_nightly_schedule_forbids_overlapping_runs_and_creates_the_rayjob_template():
    [(_, cron)] = _of_kind("CronJob")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    assert len(cron["spec"]["schedule"].split()) == 5
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    [volume] = pod["volumes"]
    config_maps = {obj["metadata"]["name"]: obj for _, obj in _of_kind("ConfigMap")}
    template = yaml.safe_load(config_maps[volume["configMap"]["name"]]["data"]["rayjob.yaml"])
    assert template["kind"] == "RayJob"
    script = pod["containers"][0]["args"][0]
    assert f"{pod['containers'][0]['volumeMounts'][0]['mountPath']}/rayjob.yaml" in script
    [(_, role)] = _of_kind("Role")
    [rule] = role["rules"]
    assert rule["resources"] == ["rayjobs"] and {"create", "get", "delete"} <= set(rule["verbs"])


# What a RayCronJob's spec may hold in KubeRay 1.6 (ray-operator/apis/ray/v1/raycronjob_types.go); 1.7 adds
# timeZone. Neither has a concurrency policy, which is why the CronJob is the default (nightly-label.yaml).
RAY_CRON_JOB_SPEC_FIELDS = {"schedule", "jobTemplate", "suspend"}


def _nightly_cron_job() -> tuple[dict, dict, dict]:
    """The nightly CronJob, its pod's container, and the RayJob template that container creates."""
    [(_, cron)] = _of_kind("CronJob")
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    [volume] = pod["volumes"]
    config_maps = {obj["metadata"]["name"]: obj for _, obj in _of_kind("ConfigMap")}
    template = yaml.safe_load(config_maps[volume["configMap"]["name"]]["data"]["rayjob.yaml"])
    return cron, container, template


def test_ray_cron_job_runs_the_same_night_with_kuberay_1_6_fields_and_the_clusters_store():
    [(where, ray_cron)] = _of_kind("RayCronJob")
    cron, _, template = _nightly_cron_job()
    assert ray_cron["apiVersion"] == "ray.io/v1"
    assert set(ray_cron["spec"]) <= RAY_CRON_JOB_SPEC_FIELDS, f"{where}: a field KubeRay 1.6 rejects"
    assert ray_cron["spec"]["schedule"] == cron["spec"]["schedule"]
    assert ray_cron["spec"]["jobTemplate"]["entrypoint"] == template["spec"]["entrypoint"]
    # The operator copies jobTemplate as it is, so the store is written there: the one the cluster's nodes load.
    store = _cluster_env()["data"]["MLFLOW_TRACKING_URI"]
    assert _runtime_env_vars(ray_cron["spec"]["jobTemplate"]) == {"MLFLOW_TRACKING_URI": store}


FAKE_KUBECTL = """#!/bin/sh
# kubectl in the CronJob's pod: keeps the RayJob it is asked to create, answers its status.
case "$1" in
  create) cat > "$FAKE_STATE/created.yaml"; echo rayjob.ray.io/fcn-nightly-label-x7k2q ;;
  get) case "$*" in *jobDeploymentStatus*) echo Complete ;; *) echo "$FAKE_JOB_STATUS" ;; esac ;;
  *) echo "unexpected: kubectl $*" >&2; exit 1 ;;
esac
"""


@pytest.mark.parametrize("store, job_status, exit_code", [
    ("http://fcn-mlflow:5000", "SUCCEEDED", 0),
    ("https://mlflow.example.com/a|b?x=1&y=2", "SUCCEEDED", 0),  # characters special to sed
    ("http://fcn-mlflow:5000", "FAILED", 1),
    ("", "SUCCEEDED", 2),
], ids=["plain", "sed-characters", "failed-night", "no-store"])
def test_cron_job_pod_writes_the_clusters_store_into_the_rayjob_it_creates(store, job_status, exit_code, tmp_path):
    """The pod's script, run by /bin/sh with kubectl replaced: the RayJob it creates is the template with the
    store from ConfigMap fcn-pipeline-env in its runtime environment, and the pod fails when the night does."""
    _, container, template = _nightly_cron_job()
    source = container["env"][0]["valueFrom"]["configMapKeyRef"]
    assert container["env"][0]["name"] == "MLFLOW_TRACKING_URI"
    assert source == {"name": _cluster_env()["metadata"]["name"], "key": "MLFLOW_TRACKING_URI"}
    mount = container["volumeMounts"][0]["mountPath"]
    [(_, config_map)] = [(w, o) for w, o in _of_kind("ConfigMap") if "rayjob.yaml" in o["data"]]
    (tmp_path / "rayjob.yaml").write_text(config_map["data"]["rayjob.yaml"])
    kubectl = tmp_path / "bin" / "kubectl"
    kubectl.parent.mkdir()
    kubectl.write_text(FAKE_KUBECTL)
    kubectl.chmod(0o755)
    script = container["args"][0].replace(f"{mount}/", f"{tmp_path}/")
    env = {"PATH": f"{kubectl.parent}:/usr/bin:/bin", "MLFLOW_TRACKING_URI": store, "FAKE_STATE": str(tmp_path),
           "FAKE_JOB_STATUS": job_status}
    result = subprocess.run([*container["command"], script], env=env, capture_output=True, text=True, timeout=30)

    assert result.returncode == exit_code, result.stdout + result.stderr
    if not store:
        assert "MLFLOW_TRACKING_URI" in result.stderr and not (tmp_path / "created.yaml").exists()
        return
    created = yaml.safe_load((tmp_path / "created.yaml").read_text())
    assert _runtime_env_vars(created["spec"]) == {"MLFLOW_TRACKING_URI": store}
    assert {**created, "spec": {**created["spec"], "runtimeEnvYAML": None}} == \
        {**template, "spec": {**template["spec"], "runtimeEnvYAML": None}}
    assert f"job {job_status}" in result.stdout


def test_mlflow_server_uses_postgres_and_s3_from_secrets():
    [(_, deployment)] = _of_kind("Deployment")
    [(_, service)] = _of_kind("Service")
    template = deployment["spec"]["template"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
    assert service["spec"]["selector"].items() <= template["metadata"]["labels"].items()
    container = template["spec"]["containers"][0]
    assert any(arg.startswith("--artifacts-destination=s3://") for arg in container["args"])
    env = {variable["name"]: variable for variable in container["env"]}
    assert "secretKeyRef" in env["MLFLOW_BACKEND_STORE_URI"]["valueFrom"]
    assert container["envFrom"][0]["secretRef"]["name"]


def _entrypoints() -> list[tuple[str, str]]:
    return [(where, spec["entrypoint"]) for where, spec in _ray_job_specs()]


@pytest.mark.parametrize("where, entrypoint", _entrypoints(), ids=[w for w, _ in _entrypoints()])
def test_job_entrypoints_name_real_jobs_with_real_flags(where, entrypoint, capsys):
    words = shlex.split(entrypoint)
    if words[:2] == ["python", "-m"]:
        module, args = words[2], words[3:]
    else:
        assert words[0] == "python" and words[1].startswith("jobs/") and words[1].endswith(".py"), entrypoint
        module, args = words[1][:-3].replace("/", "."), words[2:]
    assert module.startswith("jobs."), entrypoint
    parser = importlib.import_module(module).build_parser()
    try:
        parser.parse_args(args)
    except SystemExit:
        pytest.fail(f"{where}: {module} rejects its arguments: {capsys.readouterr().err.strip()}")


@pytest.mark.parametrize("path", RAY_UP_FILES, ids=[p.name for p in RAY_UP_FILES])
def test_ray_up_config_matches_ray_schema_with_cpu_and_gpu_nodes(path):
    import jsonschema
    import ray.autoscaler

    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    [config] = _documents(path)
    jsonschema.validate(config, schema)
    node_types = config["available_node_types"]
    assert config["head_node_type"] in node_types
    instance_types = {name: node["node_config"]["InstanceType"] for name, node in node_types.items()}
    assert any(kind.startswith(("g", "p")) for kind in instance_types.values()), "a GPU node type"
    assert any(kind.startswith(("m", "c", "r")) for kind in instance_types.values()), "a CPU node type"
    for commands in (config["head_start_ray_commands"], config["worker_start_ray_commands"]):
        assert any("RAY_AUTH_MODE=token" in command for command in commands)
    assert any("auth_token" in remote for remote in config["file_mounts"])


def test_dockerfile_copies_paths_that_exist():
    root = INFRA.parent
    for line in (INFRA / "docker" / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY"):
            sources = [word for word in line.split()[1:-1] if not word.startswith("--")]
            for source in sources:
                assert (root / source).exists(), f"Dockerfile copies {source}, which is missing"
