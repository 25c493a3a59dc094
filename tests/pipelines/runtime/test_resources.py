import pytest

from pipelines.errors import ConfigError
from pipelines.runtime.resources import CPU_STAGE_RESERVE, plan_resources


def test_gpu_cluster_gets_one_actor_per_gpu():
    plan = plan_resources(cluster_cpus=32, cluster_gpus=4, node_cpus=8)
    assert (plan.num_actors, plan.gpus_per_actor, plan.cpus_per_actor, plan.threads_per_actor) == (4, 1.0, 1.0, 1)


def test_two_cpu_machine_leaves_room_for_cpu_stages_but_uses_both_cores():
    plan = plan_resources(cluster_cpus=2, cluster_gpus=0)
    assert plan.num_actors == 1 and plan.gpus_per_actor == 0 and not plan.fixed_pool
    assert plan.cpus_per_actor + CPU_STAGE_RESERVE <= 2
    assert plan.threads_per_actor == 2


def test_large_cpu_node_gets_several_actors_sharing_its_cores():
    plan = plan_resources(cluster_cpus=64, cluster_gpus=0, node_cpus=64)
    assert plan.cpus_per_actor == 4 and plan.num_actors == 15
    assert plan.threads_per_actor * plan.num_actors >= 64 > (plan.threads_per_actor - 1) * plan.num_actors


def test_gpu_actors_requested_before_the_autoscaler_adds_gpu_nodes():
    plan = plan_resources(cluster_cpus=4, cluster_gpus=0, gpus_per_actor=1)
    assert (plan.num_actors, plan.gpus_per_actor) == (1, 1)


def test_explicit_values_win_and_impossible_ones_are_refused():
    plan = plan_resources(cluster_cpus=8, cluster_gpus=0, num_actors=3, cpus_per_actor=0.5)
    assert (plan.num_actors, plan.cpus_per_actor, plan.threads_per_actor, plan.fixed_pool) == (3, 0.5, 3, True)
    with pytest.raises(ConfigError):
        plan_resources(cluster_cpus=8, cluster_gpus=0, gpus_per_actor=-1)
    with pytest.raises(ConfigError):
        plan_resources(cluster_cpus=8, cluster_gpus=0, num_actors=0)
    with pytest.raises(ConfigError):
        plan_resources(cluster_cpus=8, cluster_gpus=0, cpus_per_actor=0)
