"""The malloc settings of model-running processes, observed through glibc's own accounting."""
import os
import platform
import subprocess
import sys

import pytest

# Allocates a 20 MiB tensor (an activation's size) and reports whether glibc serves it with an mmap of its
# own (then every pass pays page faults for it), and whether the heap keeps its memory once it is freed.
SCRIPT = """
import ctypes, sys, torch
from pipelines.cpu_allocator import reuse_freed_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
applied = reuse_freed_memory() if sys.argv[1] == "tuned" else False
tensor = torch.empty(20 << 20, dtype=torch.uint8)
mmapped = libc.mallinfo2().hblkhd >= 20 << 20
del tensor
print(applied, mmapped, libc.mallinfo2().fordblks >= 20 << 20)
"""


def _glibc_version() -> tuple[int, ...]:
    name, version = platform.libc_ver()
    return tuple(int(part) for part in version.split(".")) if name == "glibc" and version else ()


@pytest.mark.skipif(_glibc_version() < (2, 33), reason="needs glibc's mallopt and mallinfo2 (glibc >= 2.33)")
def test_activation_sized_blocks_come_from_the_heap_once_applied():
    # glibc's defaults, whatever the environment running the tests sets
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MALLOC_", "GLIBC_TUNABLES"))}

    def run(mode: str) -> list[str]:
        return subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, env=env,
                              check=True).stdout.split()

    assert run("default") == ["False", "True", "False"]  # glibc's default: a fresh mmap, unmapped when freed
    assert run("tuned") == ["True", "False", "True"]
