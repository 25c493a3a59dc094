"""Worker sizing: workers never take the CPUs that data loading needs, and what cannot fit is refused in one line."""
import pytest

from pipelines.errors import ConfigError
from pipelines.training.resources import (
    CPU_STEP,
    DATA_CPUS,
    NodeResources,
    WorkerPlan,
    plan_workers,
    workers_that_fit,
)

TWO_CPUS = [NodeResources(cpus=2)]


@pytest.mark.parametrize(("num_workers", "share"), [(1, 1.5), (2, 0.75), (3, 0.5), (4, 0.35)])
def test_unset_cpus_shrink_to_fractions_that_leave_room_for_data_loading(num_workers, share):
    plan = plan_workers(TWO_CPUS, num_workers=num_workers, cpus_per_worker=None, use_gpu=None)
    assert plan == WorkerPlan(use_gpu=False, cpus_per_worker=share)


@pytest.mark.parametrize("nodes", [
    [NodeResources(2)], [NodeResources(1), NodeResources(1)], [NodeResources(4), NodeResources(4)],
    [NodeResources(16), NodeResources(3), NodeResources(0.5)],
])
@pytest.mark.parametrize("num_workers", [1, 2, 3, 5, 8])
def test_the_chosen_share_is_the_largest_that_fits(nodes, num_workers):
    cpus = plan_workers(nodes, num_workers=num_workers, cpus_per_worker=None, use_gpu=None).cpus_per_worker
    assert num_workers * cpus + DATA_CPUS <= sum(node.cpus for node in nodes) + 1e-9
    assert workers_that_fit(nodes, cpus, use_gpu=False) >= num_workers
    assert workers_that_fit(nodes, cpus + CPU_STEP, use_gpu=False) < num_workers


def test_too_many_workers_for_the_cluster_refuse_in_one_line_that_says_what_fits():
    with pytest.raises(ConfigError) as refused:
        plan_workers(TWO_CPUS, num_workers=3, cpus_per_worker=1.0, use_gpu=None)
    assert str(refused.value) == ("--num-workers 3 x --cpus-per-worker 1 needs 3.5 CPUs with the 0.5 kept for data "
                                  "loading; this cluster has 2: use --cpus-per-worker 0.5 or --num-workers 1")
    # What the line proposes is accepted.
    assert plan_workers(TWO_CPUS, num_workers=3, cpus_per_worker=0.5, use_gpu=None).cpus_per_worker == 0.5
    assert plan_workers(TWO_CPUS, num_workers=1, cpus_per_worker=1.0, use_gpu=None).cpus_per_worker == 1.0


def test_workers_that_would_take_the_last_cpu_are_refused_as_the_hang_they_would_cause():
    # 2 x 1 CPU on 2 CPUs: Ray would start both workers and never the fetch tasks.
    with pytest.raises(ConfigError, match="needs 2.5 CPUs"):
        plan_workers(TWO_CPUS, num_workers=2, cpus_per_worker=1.0, use_gpu=False)


def test_free_cpus_split_across_nodes_are_not_room_for_data_loading():
    # 2 x 0.75 on two 1-CPU nodes leaves 0.5 CPU in all, but 0.25 on each node: no fetch task fits.
    nodes = [NodeResources(1), NodeResources(1)]
    with pytest.raises(ConfigError, match="this cluster has 2 on 2 nodes, at most 1 on one: use --cpus-per-worker 0.5"):
        plan_workers(nodes, num_workers=2, cpus_per_worker=0.75, use_gpu=None)
    assert plan_workers(nodes, num_workers=2, cpus_per_worker=None, use_gpu=None).cpus_per_worker == 0.5


def test_a_worker_larger_than_any_node_is_refused():
    nodes = [NodeResources(4), NodeResources(4)]
    assert plan_workers(nodes, num_workers=2, cpus_per_worker=3.0, use_gpu=None).cpus_per_worker == 3.0
    # One worker fills a node, data loading runs on the other.
    with pytest.raises(ConfigError, match="needs 5.5 CPUs .* at most 4 on one: use --cpus-per-worker 4$"):
        plan_workers(nodes, num_workers=1, cpus_per_worker=5.0, use_gpu=None)


def test_unset_cpus_with_more_workers_than_cpu_steps_are_refused():
    with pytest.raises(ConfigError, match="--num-workers 40 leaves each worker less than 0.05 CPUs"):
        plan_workers(TWO_CPUS, num_workers=40, cpus_per_worker=None, use_gpu=None)


def test_gpu_workers_hold_one_cpu_and_one_gpu_each_and_need_enough_gpus():
    node = NodeResources(cpus=8, gpus=1)
    assert plan_workers([node], num_workers=1, cpus_per_worker=None, use_gpu=None) == plan_workers(
        [node], num_workers=1, cpus_per_worker=None, use_gpu=True)
    assert plan_workers([node], num_workers=1, cpus_per_worker=None, use_gpu=None).cpus_per_worker == 1.0
    with pytest.raises(ConfigError, match="^2 GPU worker.* need 2 GPUs, one each; this cluster has 1: "
                                          "use --num-workers 1 or --no-use-gpu$"):
        plan_workers([node], num_workers=2, cpus_per_worker=None, use_gpu=None)
    with pytest.raises(ConfigError, match="has 0: use --no-use-gpu$"):
        plan_workers(TWO_CPUS, num_workers=1, cpus_per_worker=None, use_gpu=True)
    # --no-use-gpu on a GPU node: CPU workers sized as on any node.
    assert plan_workers([node], num_workers=1, cpus_per_worker=None, use_gpu=False).cpus_per_worker == 7.5


def test_gpu_workers_on_a_node_short_of_cpus_get_less_than_one():
    plan = plan_workers([NodeResources(cpus=1, gpus=2)], num_workers=2, cpus_per_worker=None, use_gpu=True)
    assert plan.use_gpu and plan.cpus_per_worker == 0.25
