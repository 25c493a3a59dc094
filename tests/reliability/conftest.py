"""Fixtures of the reliability tests, and the figures they leave for ``benchmarks/fault_report.py``.

Each fault scenario records what it injected and what the output held afterwards (inputs, rows,
images lost and duplicated) through the ``fault_report`` fixture, before it asserts anything, so a
failing scenario still shows its numbers. When ``FCN_FAULT_REPORT`` names a file, the records of the
session, each with its test's outcome, are written there as JSON at the end.
"""
from __future__ import annotations

import json
import os

import pytest

from tests.reliability.audit import OutputAudit

REPORT_ENV = "FCN_FAULT_REPORT"
_records: dict[str, dict] = {}


KINDS = ("fault", "input", "security")


@pytest.fixture
def fault_report(request):
    """``record(kind, scenario, audit=None, exit_codes=(), detail="")``: this test's figures.

    ``kind`` is one of `KINDS`; ``audit`` supplies the image counts (inputs, rows, lost, duplicated)
    and the broken promises it found; ``detail`` is one short line for the table.
    """
    def record(kind: str, scenario: str, audit: OutputAudit | None = None, exit_codes=(), detail: str = "") -> None:
        assert kind in KINDS, kind
        _records[request.node.nodeid] = {
            "test": request.node.nodeid, "kind": kind, "scenario": scenario, "exit_codes": list(exit_codes),
            "detail": detail, **(audit.counts if audit is not None else {}),
            "problems": {name: len(items) for name, items in audit.problems().items()} if audit else {},
        }
    return record


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    record = _records.get(item.nodeid)
    if record is not None and (report.when == "call" or report.failed):
        record["outcome"] = report.outcome
    return report


def pytest_sessionfinish(session):
    target = os.environ.get(REPORT_ENV)
    if target and _records:
        with open(target, "w") as handle:
            json.dump(list(_records.values()), handle, indent=2, ensure_ascii=False)


@pytest.fixture
def s3_files(s3_server):
    """An s3fs client of the session's S3 server, independent of ``pipelines.io.storage``."""
    import s3fs

    return s3fs.S3FileSystem(key=s3_server.access_key, secret=s3_server.secret_key, skip_instance_cache=True,
                             use_listings_cache=False, client_kwargs={"endpoint_url": s3_server.endpoint_url})
