"""The reliability figures: run the fault-injection and hostile-input tests, then print benchmarks/README.md's table.

The tests in ``tests/reliability/`` record what each scenario injected and what the output held
afterwards (images in, rows, lost, duplicated) into a JSON file named by ``FCN_FAULT_REPORT``; the
training-worker kill is covered by ``tests/jobs/test_train_fcn.py`` and enters the table with its
test outcome. Run from the repository root (real Ray, SeaweedFS and MLflow; about 15 minutes on a
2-core machine):

    python3 -m benchmarks.fault_report                      # run the tests, print the table
    python3 -m benchmarks.fault_report --skip-training      # without the training-worker kill
    python3 -m benchmarks.fault_report --from-json fault-report.json   # print an earlier run's table

The test suite runs ``--from-json`` on a small file of its own: the tests that leave the figures run
in the suite already, so a tiny run of them here would only run them twice.
Pytest's own output goes to stderr; stdout holds only the Markdown table and its totals line.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from xml.etree import ElementTree

REPO = Path(__file__).resolve().parents[1]
RELIABILITY_TESTS = "tests/reliability"
TRAINING_KILL_TEST = ("tests/jobs/test_train_fcn.py::"
                      "test_a_killed_worker_is_replaced_and_training_continues_from_the_last_checkpoint")
TRAINING_KILL = {"kind": "fault", "test": TRAINING_KILL_TEST,
                 "scenario": "Ray Train worker killed with SIGKILL mid-epoch",
                 "detail": "training resumes from the last checkpoint and finishes the requested epochs"}
REPORT_ENV = "FCN_FAULT_REPORT"  # read by tests/reliability/conftest.py


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--from-json", type=Path, default=None, metavar="PATH",
                        help="print the table of a JSON file written by an earlier run instead of running the tests")
    parser.add_argument("--json-out", type=Path, default=None, metavar="PATH",
                        help="keep the tests' JSON here (default: a temporary file)")
    parser.add_argument("--skip-training", action="store_true",
                        help="leave out the training-worker kill test (several minutes on its own)")
    return parser.parse_args(argv)


def run_tests(json_path: Path, *, training: bool) -> list[dict]:
    """Run the scenarios under pytest; returns their records, the training kill included as a record."""
    with tempfile.TemporaryDirectory(prefix="fault-report-") as workdir:
        junit = Path(workdir) / "junit.xml"
        tests = [RELIABILITY_TESTS, *([TRAINING_KILL_TEST] if training else [])]
        command = [sys.executable, "-m", "pytest", *tests, "-q", "-p", "no:cacheprovider", f"--junitxml={junit}"]
        subprocess.run(command, check=False, cwd=REPO, env={**os.environ, REPORT_ENV: str(json_path)},
                       stdout=sys.stderr)
        records = json.loads(json_path.read_text()) if json_path.exists() else []
        if training:
            records.append({**TRAINING_KILL, "outcome": junit_outcome(junit, TRAINING_KILL_TEST)})
    json_path.write_text(json.dumps(records, indent=2, ensure_ascii=False))
    return records


def junit_outcome(junit: Path, nodeid: str) -> str:
    """``passed``, ``failed``, ``skipped`` or ``not run`` for the test ``nodeid`` in a JUnit XML report."""
    if not junit.exists():
        return "not run"
    module, name = nodeid.split("::", 1)
    classname = module.removesuffix(".py").replace("/", ".")
    for case in ElementTree.parse(junit).iter("testcase"):
        if case.get("classname") == classname and case.get("name") == name:
            if case.find("failure") is not None or case.find("error") is not None:
                return "failed"
            return "skipped" if case.find("skipped") is not None else "passed"
    return "not run"


def _cell(value) -> str:
    return "—" if value is None else str(value).replace("|", "\\|")


def render(records: list[dict]) -> str:
    """The Markdown table (one row per scenario) and a totals line."""
    lines = ["| Kind | Scenario | Images | Lost | Duplicated | Exit codes | What was checked | Result |",
             "|---|---|---:|---:|---:|---|---|---|"]
    for record in sorted(records, key=lambda r: ("fault", "input", "security").index(r["kind"])):
        codes = ", ".join(str(code) for code in record.get("exit_codes", [])) or None
        lines.append("| " + " | ".join(_cell(value) for value in (
            record["kind"], record["scenario"], record.get("inputs"), record.get("lost"), record.get("duplicated"),
            codes, record.get("detail") or None, record.get("outcome", "not run"))) + " |")
    faults = sum(record["kind"] == "fault" for record in records)
    bad_inputs = sum(record.get("inputs", 0) for record in records if record["kind"] == "input")
    lost = sum(record.get("lost", 0) for record in records)
    duplicated = sum(record.get("duplicated", 0) for record in records)
    passed = sum(record.get("outcome") == "passed" for record in records)
    totals = (f"Faults injected: {faults} · bad inputs tried: {bad_inputs} · images lost: {lost} · "
              f"images duplicated: {duplicated} · scenarios passed: {passed} of {len(records)}")
    lines += ["", totals]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_json:
        records = json.loads(args.from_json.read_text())
    else:
        json_path = args.json_out or Path(tempfile.mkdtemp(prefix="fault-report-")) / "fault-report.json"
        json_path.unlink(missing_ok=True)  # a stale file must not pass for this run's figures
        records = run_tests(json_path, training=not args.skip_training)
        print(f"figures saved in {json_path}", file=sys.stderr)
    print(render(records))
    return 0 if records and all(record.get("outcome") == "passed" for record in records) else 1


if __name__ == "__main__":
    sys.exit(main())
