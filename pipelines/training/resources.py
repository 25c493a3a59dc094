"""How much of the cluster each training worker reserves, so that workers and data loading both get scheduled.

Ray Data's fetch tasks ask for `DATA_CPUS` and must run beside the workers for the whole run. If the
workers' reservations leave no node with that much free, the fetch tasks never start and training
waits for its first batch forever (Ray only warns that it "may hang"). So the sizes are settled
before any worker starts: left unset, `--cpus-per-worker` becomes the largest share that leaves room
for data loading, fractional where the cluster is small (two workers on 2 CPUs get 0.75 each); set,
or with GPU workers, a reservation that does not fit is refused with one line that says what does.

Pure functions of the nodes' resources, so the rule is tested without Ray.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from pipelines.errors import ConfigError

DATA_CPUS = 0.5  # what each fetch task of `data.read_split` asks for; one must always fit
CPU_STEP = 0.05  # computed shares are multiples of this: they read well, and Ray counts in steps of 1e-4
_TOLERANCE = 1e-9  # (1.5 - 0.5) / 0.05 is 19.999999999999996 in floating point


@dataclass(frozen=True)
class NodeResources:
    """What one alive node of the cluster offers."""

    cpus: float
    gpus: float = 0.0


@dataclass(frozen=True)
class WorkerPlan:
    """The resolved `--use-gpu` and `--cpus-per-worker` (a GPU worker also holds one GPU)."""

    use_gpu: bool
    cpus_per_worker: float


def workers_that_fit(nodes: list[NodeResources], cpus_per_worker: float, use_gpu: bool) -> int:
    """How many workers fit on `nodes` while one node keeps `DATA_CPUS` free.

    Counted for the best placement: on one node the only one; on several, Ray (which packs a run's
    workers onto as few nodes as it can) is trusted to find it.
    """
    def on_node(node: NodeResources, kept: float) -> int:
        count = math.floor((node.cpus - kept) / cpus_per_worker + _TOLERANCE)
        return max(0, min(count, math.floor(node.gpus)) if use_gpu else count)

    everywhere = sum(on_node(node, 0.0) for node in nodes)
    return max((everywhere - on_node(node, 0.0) + on_node(node, DATA_CPUS) for node in nodes), default=0)


def largest_share(nodes: list[NodeResources], num_workers: int, use_gpu: bool) -> float:
    """The most CPUs (a multiple of `CPU_STEP`) each of `num_workers` workers can hold; 0 when none fits.

    Fewer CPUs never fit fewer workers, so a bisection over the multiples of `CPU_STEP` finds it.
    """
    low, high = 0, math.floor(max((node.cpus for node in nodes), default=0.0) / CPU_STEP + _TOLERANCE)
    while low < high:  # invariant: `low` steps fit (0 stands for none), more than `high` do not
        middle = (low + high + 1) // 2
        if workers_that_fit(nodes, round(middle * CPU_STEP, 2), use_gpu) >= num_workers:
            low = middle
        else:
            high = middle - 1
    return round(low * CPU_STEP, 2)


def plan_workers(nodes: list[NodeResources], *, num_workers: int, cpus_per_worker: float | None,
                 use_gpu: bool | None) -> WorkerPlan:
    """Fill in `use_gpu` (GPUs when the cluster has any) and `cpus_per_worker`, or refuse what cannot be scheduled.

    Unset, a CPU worker gets the largest share that fits, a GPU worker 1 CPU (less if that does not
    fit). Raises ConfigError, one line naming what fits, when the workers cannot all be placed with
    `DATA_CPUS` left for data loading.
    """
    gpus = sum(node.gpus for node in nodes)
    if use_gpu is None:
        use_gpu = gpus >= 1
    fit = workers_that_fit(nodes, CPU_STEP, True) if use_gpu else num_workers  # GPU workers, CPUs aside
    if fit < num_workers:
        advice = f"--num-workers {fit} or --no-use-gpu" if fit else "--no-use-gpu"
        raise ConfigError(f"{num_workers} GPU worker(s) need {num_workers} GPUs, one each; this cluster has "
                          f"{gpus:g}{_spread(nodes, 'gpus')}: use {advice}")
    share = largest_share(nodes, num_workers, use_gpu)
    if cpus_per_worker is None:
        if share == 0:
            raise ConfigError(f"--num-workers {num_workers} leaves each worker less than {CPU_STEP:g} CPUs "
                              f"beside the {DATA_CPUS:g} kept for data loading; this cluster has "
                              f"{_cpus(nodes):g}{_spread(nodes, 'cpus')}: use fewer workers")
        return WorkerPlan(use_gpu=use_gpu, cpus_per_worker=min(1.0, share) if use_gpu else share)
    fit = workers_that_fit(nodes, cpus_per_worker, use_gpu)
    if fit < num_workers:
        options = ([f"--cpus-per-worker {share:g}"] if share else []) + ([f"--num-workers {fit}"] if fit else [])
        raise ConfigError(f"--num-workers {num_workers} x --cpus-per-worker {cpus_per_worker:g} needs "
                          f"{num_workers * cpus_per_worker + DATA_CPUS:g} CPUs with the {DATA_CPUS:g} kept for "
                          f"data loading; this cluster has {_cpus(nodes):g}{_spread(nodes, 'cpus')}: use "
                          f"{' or '.join(options) if options else 'a larger cluster'}")
    return WorkerPlan(use_gpu=use_gpu, cpus_per_worker=cpus_per_worker)


def _cpus(nodes: list[NodeResources]) -> float:
    return sum(node.cpus for node in nodes)


def _spread(nodes: list[NodeResources], resource: str) -> str:
    """' on 3 nodes, at most 4 on one' for a cluster of several nodes (a worker cannot span two)."""
    if len(nodes) < 2:
        return ""
    return f" on {len(nodes)} nodes, at most {max(getattr(node, resource) for node in nodes):g} on one"
