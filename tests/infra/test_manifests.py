"""infra/: every manifest parses, has what its kind requires, holds no secret, and runs real jobs.

Each RayJob entrypoint (also the one the nightly CronJob creates from its ConfigMap) is parsed
with its job's own ``build_parser()``, so a renamed or removed flag breaks this test, not a night.
"""
import importlib
import json
import shlex
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
    assert {"RayCluster", "RayJob", "CronJob", "Deployment", "Service"} <= kinds
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


@pytest.mark.parametrize("where, job", _of_kind("RayJob"), ids=[w for w, _ in _of_kind("RayJob")])
def test_ray_jobs_select_the_cluster_defined_here(where, job):
    [(_, cluster)] = _of_kind("RayCluster")
    assert job["spec"]["entrypoint"].strip()
    assert job["spec"]["clusterSelector"] == {"ray.io/cluster": cluster["metadata"]["name"]}, where


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
    return [(where, job["spec"]["entrypoint"]) for where, job in _of_kind("RayJob")]


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
