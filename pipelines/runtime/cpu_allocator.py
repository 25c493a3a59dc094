"""glibc malloc settings for a process that runs a model on the CPU, batch after batch.

Every forward pass allocates its activations (up to gigabytes: the paper-size FCN-8s at 1024 x 768, 8
images a batch) and frees them at its end. By default glibc serves each block above 32 MiB with a mmap
of its own and unmaps it when freed, gives threads arenas of their own (whose 64 MiB heaps are unmapped
once empty), and hands freed heap tops back to the kernel. So every pass page-faults its activations in
again and the kernel zeroes each page: 5.5 million page faults and a fifth of the CPU time of a
paper-size forward pass on the 2-core development machine (a VM, where page faults are dear).

The settings: one arena for every thread (Ray runs an actor's batches on a thread pool, not the main
thread), no mmap for large blocks (they come from the heap), and no trimming (freed heap memory is
kept for the next pass). Forward passes then page-fault only while the heap grows to their size
(``benchmarks/cpu_allocator.py``: 1.28x for the default model's passes; by hand, 1.4-1.7x for the
paper-size model's). The cost is that the process keeps the memory of its largest pass, which it
needs again at the next one.

Model actors get them as environment variables (`MALLOC_ENV`, through their ``runtime_env``), which
glibc reads when the process starts: only then do they hold for threads that already exist, as an
actor's do before its constructor runs. `reuse_freed_memory` applies them to the running process,
where they hold for threads started afterwards (the benchmarks run their baselines in such a thread).

Ray Train runs the training loop in a thread of its own; training does not use them (an earlier
version of these settings, applied in-process, made a training loop slower; not measured since).
"""
from __future__ import annotations

import ctypes
import sys

# glibc's environment variables for the settings, read once at process start.
MALLOC_ENV = {
    "MALLOC_ARENA_MAX": "1",
    "MALLOC_MMAP_MAX_": "0",
    "MALLOC_TRIM_THRESHOLD_": str(1 << 40),  # never reached: no trimming
}
# The same settings as mallopt parameters (glibc's malloc.h) and values; -1 disables trimming.
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8
_MALLOPT_SETTINGS = ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, -1))


def reuse_freed_memory() -> bool:
    """Apply the settings to this process; False where the C library is not glibc (nothing changes).

    Threads that already have an arena of their own keep it: for those, start the process with `MALLOC_ENV`.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    return all([mallopt(parameter, value) for parameter, value in _MALLOPT_SETTINGS])


def release_freed_memory() -> None:
    """Hand the heap's free memory back to the kernel now, whatever the settings (for a process changing work)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass
