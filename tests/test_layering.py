"""The shape of the code as contracts: layers and no import circles (import-linter), one error root in
one module, curated public surfaces that stay cheap to import, and jobs that use only public names."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import fcn_core
import pipelines
from fcn_core import errors as core_errors
from pipelines import errors
from pipelines.runtime.job_runner import EXIT_USER_ERROR, run_cli

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("fcn_core", "pipelines", "jobs")
ERROR_MODULES = {"fcn_core/errors.py", "pipelines/errors.py"}
# Not an error a user causes: SIGTERM unwinding the job like Ctrl-C (it derives from KeyboardInterrupt).
INTERNAL_EXCEPTIONS = {"pipelines/runtime/job_runner.py:Terminated"}


def _sources(*packages: str) -> list[Path]:
    return sorted(path for package in packages for path in (ROOT / package).rglob("*.py"))


def _relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def test_import_linter_contracts_are_kept():
    """pyproject.toml's [tool.importlinter]: fcn_core free of Ray/MLflow/storage, layered subsystems, no circles."""
    lint_imports = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


def test_no_module_re_exports_through_getattr():
    offenders = [_relative(path) for path in _sources(*PACKAGES)
                 if any(isinstance(node, ast.FunctionDef) and node.name == "__getattr__"
                        for node in ast.parse(path.read_text()).body)]
    assert offenders == []


def test_every_exception_class_is_defined_in_an_errors_module():
    exception_names = {"Exception", "ValueError", "RuntimeError", "OSError", "KeyboardInterrupt",
                       "PermissionError", "FileNotFoundError", *errors.__all__}
    misplaced = []
    for path in _sources(*PACKAGES):
        if _relative(path) in ERROR_MODULES:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                bases = {base.id if isinstance(base, ast.Name) else getattr(base, "attr", "") for base in node.bases}
                if bases & exception_names and f"{_relative(path)}:{node.name}" not in INTERNAL_EXCEPTIONS:
                    misplaced.append(f"{_relative(path)}:{node.name}")
    assert misplaced == []


def test_every_public_error_derives_from_the_one_root():
    for name in errors.__all__:
        assert issubclass(getattr(errors, name), core_errors.UserError), name
    assert errors.UserError is core_errors.UserError is fcn_core.UserError
    assert sorted(pipelines.__all__) == sorted(errors.__all__)


@pytest.mark.parametrize("name", sorted(set(errors.__all__) - {"UserError"}))
def test_the_job_runner_reports_every_public_error_in_one_line(name, capsys):
    error_type = getattr(errors, name)

    def job():
        try:
            raise error_type(f"{name} for the user\nsecond line")
        except error_type as error:
            raise RuntimeError("wrapped as Ray wraps a task's failure") from error

    assert run_cli(job) == EXIT_USER_ERROR
    assert capsys.readouterr().err == f"error: {name} for the user\n"


def test_root_and_subsystem_packages_import_nothing_heavy():
    """A Ray actor, `--help` and a user error import these first; torch, Ray and MLflow stay out of them."""
    packages = ["fcn_core", "pipelines"] + sorted(
        f"pipelines.{path.parent.name}" for path in (ROOT / "pipelines").glob("*/__init__.py"))
    code = (f"import sys; import {', '.join(packages)}; "
            "print(sorted(m for m in ('torch', 'ray', 'mlflow', 'deltalake') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                            timeout=60)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("job", sorted(path.name for path in (ROOT / "jobs").glob("[a-z]*.py")))
def test_a_jobs_help_imports_no_heavy_library(job):
    """``--help`` answers in well under a second (benchmarks/fast_answers.py times it): torch, Ray and MLflow
    cost a second or more each, so a job imports them only once its flags are read."""
    code = ("import runpy, sys\n"
            f"sys.argv = ['{job}', '--help']\n"
            "try:\n"
            f"    runpy.run_path('jobs/{job}', run_name='__main__')\n"
            "except SystemExit:\n"
            "    pass\n"
            "print(sorted(m for m in ('torch', 'ray', 'mlflow') if m in sys.modules), file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                            timeout=60)
    assert "usage:" in result.stdout and result.stderr.strip() == "[]"


def _public_names(module: str) -> set[str] | None:
    """The ``__all__`` a module or package declares, read from its source; None where it declares none."""
    base = ROOT / module.replace(".", "/")
    path = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(target, "id", "") == "__all__" for target in node.targets):
            return set(ast.literal_eval(node.value))
    return None


def test_jobs_import_only_public_names():
    private = []
    for path in _sources("jobs"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.ImportFrom) and node.module
                    and node.module.split(".")[0] in ("fcn_core", "pipelines")):
                continue
            public = _public_names(node.module)
            for alias in node.names:
                submodule = (ROOT / f"{node.module}.{alias.name}".replace(".", "/")).is_dir() or (
                    ROOT / f"{node.module}.{alias.name}".replace(".", "/")).with_suffix(".py").exists()
                if any(part.startswith("_") for part in f"{node.module}.{alias.name}".split(".")) or (
                        public is not None and alias.name not in public and not submodule):
                    private.append(f"{_relative(path)}: {node.module}.{alias.name}")
    assert private == []
