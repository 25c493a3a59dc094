"""How a model-serving run (segmentation, evaluation) splits the cluster between CPU stages and inference actors.

Two different things are sized here. *Logical* CPUs decide what Ray may schedule side by side: every
node keeps ``CPU_STAGE_RESERVE`` for listing, fetching, decoding and PNG writing (light work that
mostly waits on storage), and the actors share the rest. *Threads* decide how hard an actor computes:
the CPU stages rarely use their reservation, so an actor's torch threads are its share of the node's
cores, not of its logical CPUs. On GPU clusters every actor holds one GPU and one CPU.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from pipelines.errors import ConfigError
from pipelines.runtime.cpu_allocator import MALLOC_ENV

CPU_STAGE_RESERVE = 1.5  # per node: listing 0.25 + fetch 0.5 + decode 0.25 + write 0.25, plus slack
MIN_CPUS_PER_ACTOR = 0.5
MAX_CPUS_PER_CPU_ACTOR = 4.0


@dataclass(frozen=True)
class ResourcePlan:
    num_actors: int
    cpus_per_actor: float
    gpus_per_actor: float
    threads_per_actor: int
    fixed_pool: bool = False  # an explicit --num-actors is a fixed pool; otherwise it grows with the backlog
    cpus_per_task: float = 0.25

    def model_actor_options(self, **constructor_kwargs) -> dict:
        """``map_batches`` options for a stage of model-holding actors (`pipelines.runtime.inference.DeviceModel`).

        ``constructor_kwargs`` go to the stage's constructor beside ``use_gpu`` and ``threads``.
        CPU actors start with `cpu_allocator.MALLOC_ENV`, so their forward passes reuse freed memory.
        """
        import ray

        compute = (ray.data.ActorPoolStrategy(size=self.num_actors) if self.fixed_pool
                   else ray.data.ActorPoolStrategy(min_size=1, max_size=self.num_actors))
        on_cpu = self.gpus_per_actor == 0
        return {"compute": compute, "num_cpus": self.cpus_per_actor, "num_gpus": self.gpus_per_actor,
                **({"runtime_env": {"env_vars": dict(MALLOC_ENV)}} if on_cpu else {}),
                "fn_constructor_kwargs": {"use_gpu": not on_cpu, "threads": self.threads_per_actor,
                                          **constructor_kwargs}}


def plan_resources(cluster_cpus: float, cluster_gpus: float, *, node_cpus: float | None = None,
                   num_actors: int | None = None, cpus_per_actor: float | None = None,
                   gpus_per_actor: float | None = None) -> ResourcePlan:
    """Fill in whatever the user left unset from the cluster's totals and its largest node."""
    node_cpus = node_cpus or cluster_cpus
    if gpus_per_actor is None:
        gpus_per_actor = 1.0 if cluster_gpus >= 1 else 0.0
    if gpus_per_actor < 0:
        raise ConfigError("--gpus-per-actor must not be negative")
    if cpus_per_actor is None:
        cpus_per_actor = 1.0 if gpus_per_actor > 0 else min(
            MAX_CPUS_PER_CPU_ACTOR, max(MIN_CPUS_PER_ACTOR, node_cpus - CPU_STAGE_RESERVE))
    if cpus_per_actor <= 0:
        raise ConfigError("--cpus-per-actor must be positive")
    fixed_pool = num_actors is not None
    if num_actors is None:
        # Explicit GPU requests on a cluster without GPUs yet wait for the autoscaler's first GPU node.
        num_actors = (max(1, int(cluster_gpus // gpus_per_actor)) if gpus_per_actor > 0
                      else int(max(cluster_cpus - CPU_STAGE_RESERVE, cpus_per_actor) // cpus_per_actor))
    if num_actors < 1:
        raise ConfigError("--num-actors must be at least 1")
    actors_per_node = max(1, min(num_actors, int(max(node_cpus - CPU_STAGE_RESERVE, cpus_per_actor)
                                                 // cpus_per_actor)))
    threads = math.ceil(cpus_per_actor) if gpus_per_actor > 0 else math.ceil(node_cpus / actors_per_node)
    return ResourcePlan(num_actors=num_actors, cpus_per_actor=cpus_per_actor, gpus_per_actor=gpus_per_actor,
                        threads_per_actor=max(1, threads), fixed_pool=fixed_pool)


def plan_for_cluster(*, num_actors: int | None = None, cpus_per_actor: float | None = None,
                     gpus_per_actor: float | None = None) -> ResourcePlan:
    """``plan_resources`` for the Ray cluster this process is connected to."""
    import ray

    resources = ray.cluster_resources()
    node_cpus = max(node["Resources"].get("CPU", 0.0) for node in ray.nodes() if node["Alive"])
    return plan_resources(resources.get("CPU", 1.0), resources.get("GPU", 0.0), node_cpus=node_cpus,
                          num_actors=num_actors, cpus_per_actor=cpus_per_actor, gpus_per_actor=gpus_per_actor)
