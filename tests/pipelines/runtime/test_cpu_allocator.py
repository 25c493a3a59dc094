"""The malloc settings of model-running processes, observed through the kernel's and glibc's own accounting."""
import os
import platform
import subprocess
import sys

import pytest

from pipelines.runtime.cpu_allocator import MALLOC_ENV
from pipelines.runtime.resources import plan_resources

# Two passes, each allocating and freeing an activation of 256 MiB (the paper-size model's are larger) in a
# thread started for it, as Ray runs an actor's batches; prints the minor page faults of the second pass.
PASSES = """
import resource, sys, threading, torch
from pipelines.runtime.cpu_allocator import reuse_freed_memory

if sys.argv[1] == "in-process":
    reuse_freed_memory()

def one_pass():
    torch.ones(64 << 20).sum()

faults = []
for _ in range(2):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    thread = threading.Thread(target=one_pass) if sys.argv[2] == "thread" else None
    (thread.start(), thread.join()) if thread else one_pass()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(faults[1])
"""
PAGES = (256 << 20) // 4096


def _glibc() -> bool:
    return platform.libc_ver()[0] == "glibc"


def _second_pass_faults(*, how: str, thread: str, extra_env: dict[str, str]) -> int:
    # glibc's defaults, whatever the environment running the tests sets, plus ``extra_env``
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MALLOC_", "GLIBC_TUNABLES"))}
    result = subprocess.run([sys.executable, "-c", PASSES, how, thread], capture_output=True, text=True,
                            env={**env, **extra_env}, check=True)
    return int(result.stdout)


@pytest.mark.skipif(not _glibc(), reason="glibc's malloc settings")
def test_a_process_started_with_the_settings_reuses_a_threads_freed_activations():
    assert _second_pass_faults(how="none", thread="thread", extra_env={}) > PAGES // 2  # mapped anew each pass
    assert _second_pass_faults(how="none", thread="thread", extra_env=MALLOC_ENV) < PAGES // 50


@pytest.mark.skipif(not _glibc(), reason="glibc's malloc settings")
def test_the_settings_applied_in_process_hold_for_threads_started_after():
    assert _second_pass_faults(how="in-process", thread="thread", extra_env={}) < PAGES // 50


def test_cpu_model_actors_start_with_the_settings_and_gpu_actors_without():
    cpu = plan_resources(cluster_cpus=2, cluster_gpus=0).model_actor_options()
    assert cpu["runtime_env"] == {"env_vars": MALLOC_ENV}
    gpu = plan_resources(cluster_cpus=8, cluster_gpus=1).model_actor_options()
    assert "runtime_env" not in gpu and gpu["fn_constructor_kwargs"]["use_gpu"]
