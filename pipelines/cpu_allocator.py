"""glibc malloc settings for a process that runs a model on the CPU, again and again, in its main thread.

Every forward (and backward) pass allocates activations of megabytes to tens of megabytes and frees
them at its end. By default glibc serves such blocks with a fresh ``mmap`` each time and hands freed
heap tops back to the kernel, so every pass page-faults its activations in again and the kernel
zeroes each page. Serving blocks up to glibc's largest mmap threshold (32 MiB) from the heap, and
keeping freed heap memory for the next pass, removes that: forward passes of the benchmark's FCN-8s
ran 1.3-1.8x faster on the 2-core development machine (a VM, where page faults are dear). The cost
is that the process keeps the memory of its largest pass, which it needs again at the next one.

Inference actors use it (their batches run in the process's main thread). Ray Train runs the training
loop in a thread of its own, and there the same settings made a plain training loop slower (57-64
against 66-72 images/s; why was not established: glibc gives such threads arenas of their own), so
training does not.
"""
from __future__ import annotations

import ctypes
import sys

MMAP_THRESHOLD_BYTES = 32 << 20  # glibc's maximum on 64-bit systems
TRIM_THRESHOLD_BYTES = 1 << 30
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters, from glibc's malloc.h


def reuse_freed_memory() -> bool:
    """Apply the settings to this process; False where the C library is not glibc (nothing changes)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
