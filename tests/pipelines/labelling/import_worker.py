"""jobs/import_labels.py run again and again in one process under a memory ceiling, for the hostile-file tests.

Starting Python with numpy, Pillow, pyarrow and pycocotools takes seconds; a test that ran the script in
a fresh process per hostile file would spend its time there. This process runs the script itself
(``runpy``, as ``python jobs/import_labels.py`` does) once per line of arguments it reads, and answers
each with a JSON line: the exit status and what the script wrote to stdout and stderr, a traceback
included. Its parent sets the ceiling (``RLIMIT_AS``) before it starts (`start_worker`).

    python -m tests.pipelines.labelling.import_worker   # then one JSON list of arguments a line
"""
from __future__ import annotations

import contextlib
import io
import json
import resource
import runpy
import subprocess
import sys
import traceback
from pathlib import Path

SCRIPT = str(Path(__file__).resolve().parents[3] / "jobs" / "import_labels.py")
# Bytes of address space an import may reach. A normal import of a small export reserves about 3 GiB
# (the shared libraries of deltalake, pyarrow and numpy map large regions they never touch; its RSS
# is about 0.4 GB), so this leaves about 1 GiB for what the export makes it allocate.
MEMORY_CEILING = 4 << 30


def run_script(argv: list[str]) -> dict:
    """Run jobs/import_labels.py with ``argv``: {"code": exit status, "stdout": ..., "stderr": ...}."""
    out, err = io.StringIO(), io.StringIO()
    sys.argv = [SCRIPT, *argv]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            runpy.run_path(SCRIPT, run_name="__main__")
            code = 0
        except SystemExit as exit:
            code = exit.code if isinstance(exit.code, int) else 1
        except BaseException:  # noqa: BLE001 - a crash is what the tests look for: report it as Python would
            traceback.print_exc()
            code = 1
    return {"code": code, "stdout": out.getvalue(), "stderr": err.getvalue()}


def _limit_memory(ceiling: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ceiling, ceiling))


def start_worker(ceiling: int = MEMORY_CEILING) -> subprocess.Popen:
    """This module in a subprocess whose address space is limited to ``ceiling`` bytes."""
    return subprocess.Popen([sys.executable, "-m", "tests.pipelines.labelling.import_worker"], text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, preexec_fn=lambda: _limit_memory(ceiling))


if __name__ == "__main__":
    for line in sys.stdin:
        print(json.dumps(run_script(json.loads(line))), flush=True)
