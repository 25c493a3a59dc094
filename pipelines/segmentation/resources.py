"""How a segmentation run divides the cluster between CPU stages and the inference actor pool.

CPU stages (fetch, decode, PNG encode) are light next to an FCN forward pass, so they reserve a
quarter CPU each and the actors get the rest. On GPU clusters every actor holds one GPU and one
CPU; on CPU-only clusters an actor holds up to four CPUs (its torch threads), which keeps a node
busy with a few large actors rather than many small ones fighting over memory bandwidth.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from pipelines.errors import ConfigError

CPU_STAGE_CPUS = 0.25
MAX_CPUS_PER_CPU_ACTOR = 4.0


@dataclass(frozen=True)
class ResourcePlan:
    num_actors: int
    cpus_per_actor: float
    gpus_per_actor: float
    threads_per_actor: int
    cpus_per_task: float = CPU_STAGE_CPUS


def plan_resources(cluster_cpus: float, cluster_gpus: float, *, num_actors: int | None = None,
                   cpus_per_actor: float | None = None, gpus_per_actor: float | None = None) -> ResourcePlan:
    """Fill in whatever the user left unset from the cluster's totals."""
    if gpus_per_actor is None:
        gpus_per_actor = 1.0 if cluster_gpus >= 1 else 0.0
    if cpus_per_actor is None:
        if gpus_per_actor > 0:
            cpus_per_actor = 1.0
        else:  # leave room for at least two CPU-stage tasks
            cpus_per_actor = max(0.5, min(MAX_CPUS_PER_CPU_ACTOR, cluster_cpus - 2 * CPU_STAGE_CPUS))
    if num_actors is None:
        if gpus_per_actor > 0:
            num_actors = max(1, int(cluster_gpus // gpus_per_actor))
        else:
            num_actors = max(1, int((cluster_cpus - 2 * CPU_STAGE_CPUS) // cpus_per_actor))
    if num_actors < 1:
        raise ConfigError("--num-actors must be at least 1")
    if gpus_per_actor > 0 and cluster_gpus < gpus_per_actor:
        raise ConfigError(f"--gpus-per-actor {gpus_per_actor} asks for GPUs, but the cluster has {cluster_gpus:g}")
    return ResourcePlan(
        num_actors=num_actors,
        cpus_per_actor=cpus_per_actor,
        gpus_per_actor=gpus_per_actor,
        threads_per_actor=max(1, math.ceil(cpus_per_actor)),
    )
