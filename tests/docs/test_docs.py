"""The documentation as users meet it: the site builds, and what its pages show still matches the code.

README.md is the door (at most ~250 lines, with the two set-up commands verbatim); `docs/` is built with
MkDocs, whose ``--strict`` build fails on a broken link or anchor. What a build cannot see is checked here: every
repository path and Python name the pages mention exists, every job command they show is accepted by that
job's own parser, every flag a job's page names is one of that job's flags, every job answers ``--help``, and
the Python blocks run. A block may be left out by a line ``<!-- not run: reason -->`` right above it.
"""
from __future__ import annotations

import ast
import importlib
import os
import re
import runpy
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGES = sorted([REPO / "README.md", REPO / "benchmarks" / "README.md", REPO / "infra" / "README.md",
                *(REPO / "docs").rglob("*.md")])
JOBS = sorted(path.stem for path in (REPO / "jobs").glob("*.py") if path.stem != "__init__")
INSTALL_AND_RUN = "python3 -m pip install -e . && python3 jobs/quickstart.py"
INSTALL_AND_TEST = 'python3 -m pip install -q -e ".[dev]" && python3 -m pytest'
FENCE = re.compile(r"^(?:<!-- not run: (?P<skip>[^\n]+?) -->\n)?```(?P<lang>\w*)[^\n]*\n(?P<code>.*?)^```[ \t]*$",
                   re.M | re.S)
REPO_PATH = re.compile(r"(?<![\w/.-])(?:fcn_core|pipelines|jobs|infra|benchmarks|tests|docs|\.ci)/[\w./*-]*")
DOTTED_NAME = re.compile(r"(?<![\w./])(?:fcn_core|pipelines|jobs|infra|benchmarks)(?:\.\w+)+")
INLINE_CODE = re.compile(r"`([^`\n]+)`")
LINK_TARGET = re.compile(r"\]\(([^)\s]+)\)")
FLAG = re.compile(r"(?<![\w-])--[a-z][\w-]*")


@dataclass(frozen=True)
class Block:
    where: str  # page:line
    lang: str
    code: str
    skip: str | None


def _text(page: Path) -> str:
    return page.read_text(encoding="utf-8")


def _blocks(*langs: str) -> list[Block]:
    return [Block(f"{page.relative_to(REPO)}:{_text(page)[:match.start()].count(chr(10)) + 1}", match["lang"],
                  match["code"], match["skip"])
            for page in PAGES for match in FENCE.finditer(_text(page)) if match["lang"] in langs]


def _prose(page: Path) -> str:
    return FENCE.sub("", _text(page))


def _job_commands() -> list[tuple[str, str, list[str]]]:
    """(where, job, arguments) of every `python jobs/NAME.py ...` or `python -m jobs.NAME ...` in a shell block."""
    commands = []
    for block in _blocks("bash", "sh"):
        for line in block.code.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            for index, word in enumerate(words):
                script = re.fullmatch(r"jobs/(\w+)\.py", word)
                module = word == "-m" and index + 1 < len(words) and re.fullmatch(r"jobs\.(\w+)", words[index + 1])
                if script or module:
                    start = index + 1 if script else index + 2
                    arguments = words[start:]
                    for end, argument in enumerate(arguments):
                        if argument in ("&&", "||", "|", ";"):
                            arguments = arguments[:end]
                            break
                    commands.append((block.where, (script or module)[1], arguments))
    return commands


def _bound_names(module_file: Path) -> dict[str, ast.AST | None]:
    """Names a module binds at top level (definitions, assignments, imports), with their class bodies."""
    names: dict[str, ast.AST | None] = {}
    for node in ast.parse(module_file.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names[node.name] = node
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                names.update({name.id: None for name in ast.walk(target) if isinstance(name, ast.Name)})
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update({(alias.asname or alias.name).split(".")[0]: None for alias in node.names})
    return names


def _missing(dotted: str) -> str | None:
    """Why `dotted` (a module, or a module's name, or a class's member) does not exist, or None if it does."""
    parts, path = dotted.split("."), REPO
    while parts and ((path / parts[0]).is_dir() or (path / f"{parts[0]}.py").is_file()):
        path = path / parts.pop(0)
    module_file = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    if not parts:
        return None
    if not module_file.is_file():
        return f"no module {'.'.join(dotted.split('.')[:-len(parts)])}.{parts[0]}"
    names = _bound_names(module_file)
    if parts[0] not in names:
        return f"{module_file.relative_to(REPO)} defines no {parts[0]}"
    node = names[parts[0]]
    if len(parts) > 1 and isinstance(node, ast.ClassDef):
        members = {getattr(item, "name", None) for item in node.body}
        members |= {target.id for item in node.body if isinstance(item, ast.AnnAssign)
                    for target in [item.target] if isinstance(target, ast.Name)}
        if parts[1] not in members:
            return f"class {parts[0]} in {module_file.relative_to(REPO)} has no {parts[1]}"
    return None


def test_the_readme_is_a_door_with_the_two_setup_commands():
    readme = _text(REPO / "README.md")
    assert len(readme.splitlines()) <= 250, "the README is the door; move reference material into docs/"
    for command in (INSTALL_AND_RUN, INSTALL_AND_TEST):
        assert f"\n{command}\n" in readme, command
    assert _text(REPO / ".ci" / "run").rstrip().endswith(INSTALL_AND_TEST), ".ci/run runs the README's command"


def test_the_site_builds_strictly(tmp_path):
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
                            cwd=REPO, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]


@pytest.mark.parametrize("job", JOBS)
def test_every_job_has_a_page_a_readme_row_and_help(job, monkeypatch, capsys):
    assert (REPO / "docs" / "jobs" / f"{job}.md").is_file()
    assert f"| `jobs/{job}.py` |" in _text(REPO / "README.md")
    monkeypatch.setattr(sys, "argv", [f"jobs/{job}.py", "--help"])  # exactly `python jobs/JOB.py --help`
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(REPO / "jobs" / f"{job}.py"), run_name="__main__")
    assert exit_info.value.code == 0 and capsys.readouterr().out.startswith("usage:")


def test_every_path_and_name_the_pages_mention_exists():
    problems = []
    for page in PAGES:
        text = _text(page)
        for target in LINK_TARGET.findall(text):  # relative to the page, as GitHub and MkDocs read them
            if "://" not in target and not (page.parent / target.split("#")[0]).exists():
                problems.append(f"{page.relative_to(REPO)}: broken link {target}")
        text = LINK_TARGET.sub("]()", text)
        for path in {match.rstrip(".,") for match in REPO_PATH.findall(text)}:
            if not (list(REPO.glob(path)) if "*" in path else (REPO / path).exists()):
                problems.append(f"{page.relative_to(REPO)}: no {path}")
        for dotted in set(DOTTED_NAME.findall(text)):
            if (why := _missing(dotted)) is not None:
                problems.append(f"{page.relative_to(REPO)}: {dotted}: {why}")
    for block in _blocks("python"):
        for node in ast.walk(ast.parse(block.code)):
            if isinstance(node, ast.ImportFrom) and DOTTED_NAME.fullmatch(node.module or ""):
                problems += [f"{block.where}: {why}" for alias in node.names
                             if (why := _missing(f"{node.module}.{alias.name}")) is not None]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("where, job, arguments", _job_commands(), ids=lambda value: str(value)[:60])
def test_every_job_command_shown_parses(where, job, arguments, capsys):
    assert job in JOBS, f"{where}: there is no jobs/{job}.py"
    try:
        importlib.import_module(f"jobs.{job}").build_parser().parse_args(arguments)
    except SystemExit as exit_:
        if arguments == ["--help"] and exit_.code == 0:
            return
        pytest.fail(f"{where}: jobs/{job}.py rejects {shlex.join(arguments)}: {capsys.readouterr().err.strip()}")


def test_every_flag_a_page_names_belongs_to_its_job():
    """Inline code such as `train_fcn.py --resume`, or a bare `--resume` on docs/jobs/train_fcn.md."""
    flags = {job: set(importlib.import_module(f"jobs.{job}").build_parser()._option_string_actions)
             for job in JOBS}
    problems = []
    for page in PAGES:
        page_job = page.stem if page.parent == REPO / "docs" / "jobs" and page.stem in JOBS else None
        for code in INLINE_CODE.findall(_prose(page)):
            named = re.search(rf"\b({'|'.join(JOBS)})\.py\b(.*)", code)
            job, text = (named[1], named[2]) if named else (page_job, code if code.startswith("--") else "")
            if job is None:
                continue
            problems += [f"{page.relative_to(REPO)}: `{code}`: {job}.py has no {flag}"
                         for flag in FLAG.findall(text) if flag not in flags[job]]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("block", [block for block in _blocks("python") if block.skip is None],
                         ids=lambda block: block.where)
def test_python_blocks_run(block, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(block.code, block.where, "exec"), {"__name__": "__docs__"})  # noqa: S102


def test_the_generated_corpus_is_laid_out_as_its_page_says(tmp_path, monkeypatch):
    from jobs import generate_corpus

    page = REPO / "docs" / "jobs" / "generate_corpus.md"
    [(_, _, arguments), *_] = [command for command in _job_commands() if command[0].startswith("docs/jobs/gen")]
    monkeypatch.chdir(tmp_path)
    assert generate_corpus.main(arguments) == 0
    root = tmp_path / arguments[arguments.index("--output") + 1]
    train, val = (root / f"ImageSets/Segmentation/{split}.txt" for split in ("train", "val"))
    assert (len(train.read_text().split()), len(val.read_text().split())) == (200, 50)  # "200 train + 50 val"
    assert len(list((root / "JPEGImages").glob("*.jpg"))) == len(list((root / "SegmentationClass").glob("*.png")))
    assert (root / "labelmap.txt").is_file()
    assert "200 train + 50 val" in _text(page)
