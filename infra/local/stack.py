"""The production stack on one machine, all on 127.0.0.1: S3 (SeaweedFS), MLflow, a Ray head.

The same jobs, flags and ``ray job submit`` commands as on the cluster, token authentication
included, without Kubernetes or AWS::

    infra/local/stack.sh start          # start the three services, print the variables to export
    eval "$(infra/local/stack.sh env)"  # RAY_ADDRESS, RAY_AUTH_*, MLFLOW_TRACKING_URI, AWS_*
    ray job submit -- python -m jobs.segment_bucket --input s3://data/images --output s3://data/masks ...
    infra/local/stack.sh status
    infra/local/stack.sh stop           # every process, by pid; data and logs stay

State lives in ``.local-stack/`` at the repository root (or ``$LOCAL_STACK_DIR``): ``stack.json``
(pids and the environment), the services' logs and data, the Ray token. MLflow keeps its runs in
SQLite there and its artifacts in the S3 bucket ``mlflow-artifacts``, proxied as in production;
the bucket ``data`` is there for job inputs and outputs.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

from infra.local.seaweedfs import SeaweedServer, start_seaweedfs
from infra.local.services import (
    ServiceError,
    session_members,
    start_mlflow_server,
    start_ray_head,
    stop_ray_head,
    stop_session,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
STATE_FILE = "stack.json"
ARTIFACTS_BUCKET = "mlflow-artifacts"
DATA_BUCKET = "data"


def state_dir() -> Path:
    return Path(os.environ.get("LOCAL_STACK_DIR") or REPO_ROOT / ".local-stack").resolve()


def read_state(directory: Path) -> dict | None:
    path = directory / STATE_FILE
    return json.loads(path.read_text()) if path.exists() else None


def running_services(state: dict) -> dict[str, bool]:
    return {name: bool(session_members(pid)) for name, pid in state["pids"].items()}


def export_lines(env: dict[str, str]) -> str:
    return "\n".join(f"export {name}={shlex.quote(value)}" for name, value in sorted(env.items()))


def start(directory: Path) -> dict:
    """Start S3, then MLflow (artifacts on S3), then a Ray head whose jobs see both."""
    state = read_state(directory)
    if state and all(running_services(state).values()):
        print(f"local stack already running (state in {directory})", file=sys.stderr)
        return state
    if state:
        stop(directory)
    directory.mkdir(parents=True, exist_ok=True)
    s3 = start_seaweedfs(directory / "s3")
    started: list[Callable[[], None]] = [s3.stop]
    try:
        for bucket in (ARTIFACTS_BUCKET, DATA_BUCKET):
            s3.create_bucket(bucket)
        mlflow = start_mlflow_server(directory / "mlflow", artifacts_destination=f"s3://{ARTIFACTS_BUCKET}/",
                                     env={**os.environ, **s3.env(), "MLFLOW_S3_ENDPOINT_URL": s3.endpoint_url})
        started.append(functools.partial(stop_session, mlflow.pid))
        job_env = {**s3.env(), "MLFLOW_TRACKING_URI": mlflow.tracking_uri}
        num_cpus = int(os.environ.get("LOCAL_STACK_NUM_CPUS") or (os.cpu_count() or 2) + 2)
        ray_head = start_ray_head(directory / "ray", env={**os.environ, **job_env}, num_cpus=num_cpus)
    except BaseException:
        for stop_service in reversed(started):
            stop_service()
        raise
    state = {"pids": {"s3": s3.pid, "mlflow": mlflow.pid, "ray": ray_head.pid},
             "env": {**job_env, **ray_head.client_env()},
             "s3": {**dataclasses.asdict(s3), "workdir": str(s3.workdir), "log_path": str(s3.log_path)},
             "ray_temp_dir": str(ray_head.temp_dir),
             "logs": {"s3": str(s3.log_path), "mlflow": str(mlflow.log_path), "ray": str(ray_head.log_path)}}
    (directory / STATE_FILE).write_text(json.dumps(state, indent=2))
    return state


def stop(directory: Path) -> None:
    """Stop every service of the stack by pid, Ray first (its jobs may still write to S3 and MLflow)."""
    state = read_state(directory)
    if state is None:
        print(f"local stack not running (no {directory / STATE_FILE})", file=sys.stderr)
        return
    stop_ray_head(state["pids"]["ray"], Path(state["ray_temp_dir"]))
    stop_session(state["pids"]["mlflow"])
    # SeaweedServer.stop also removes the sockets SeaweedFS leaves in /tmp.
    SeaweedServer(**{**state["s3"], "workdir": Path(state["s3"]["workdir"]),
                     "log_path": Path(state["s3"]["log_path"])}).stop()
    (directory / STATE_FILE).unlink()
    print(f"local stack stopped (Ray head, MLflow server, S3 server); data and logs stay in {directory}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stack.sh", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["start", "stop", "env", "status"])
    args = parser.parse_args(argv)
    directory = state_dir()
    if args.command == "start":
        try:
            state = start(directory)
        except ServiceError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        print(export_lines(state["env"]))
        print(f"# local stack running; state and logs in {directory}; stop with infra/local/stack.sh stop",
              file=sys.stderr)
    elif args.command == "stop":
        stop(directory)
    elif args.command == "env":
        state = read_state(directory)
        if state is None:
            print("error: local stack not running; start it with infra/local/stack.sh start", file=sys.stderr)
            return 1
        print(export_lines(state["env"]))
    else:
        state = read_state(directory)
        if state is None:
            print("local stack: not running")
            return 1
        status = running_services(state)
        for name, up in status.items():
            print(f"{name}: {'running' if up else 'STOPPED'} (pid {state['pids'][name]})")
        print(f"ray dashboard: {state['env']['RAY_ADDRESS']}  mlflow: {state['env']['MLFLOW_TRACKING_URI']}")
        return 0 if all(status.values()) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
