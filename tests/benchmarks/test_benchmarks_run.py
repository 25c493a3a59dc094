"""Every benchmark in ``benchmarks/`` at ``--tiny``, so that a change elsewhere cannot leave one broken unnoticed.

A tiny run's figures mean nothing (its sizes are the smallest, it runs once, the machine is busy with
tests), so these tests check what each benchmark prints: its rows, what each job reported doing,
and that every ratio is a finite positive number. ``fast_answers`` and ``hostile_imports`` have tests
of their own, beside the code they measure (``tests/jobs/test_fast_answers.py``,
``tests/pipelines/labelling/test_hostile_imports.py``).

Benchmarks that use Ray join the session's (`ray_local`: a benchmark attached to a runtime already
uses that one, see `benchmarks.common.local_ray`), which saves each a Ray start, from a process of
their own: whatever their driver leaves in Ray (actors, placement groups) ends with that process, and
``segment_throughput`` and ``photo_throughput`` change their process's malloc settings for the rest of
its life (`pipelines.runtime.cpu_allocator.reuse_freed_memory`). ``read_throughput`` measures in this
process, on the session's S3 server and Ray, where its own command starts both.
"""
from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
NUMBER = r"([-+0-9.eE]+|nan|inf)"


@pytest.fixture(autouse=True)
def torch_threads():
    """The benchmarks set torch's thread count for their measurements; the tests after them keep the session's."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def session_ray_left_as_found():
    """Every CPU of the session's Ray is free again after a benchmark, so no later test waits on what it left.

    A benchmark that ran Ray Train in this process once left CPUs held, and a comparison test an hour
    later waited on them until its timeout; benchmarks that use Ray now run as processes of their own
    (whatever their driver owns ends with it), and this check names a leak where it happens.
    """
    yield
    import ray

    if not ray.is_initialized():
        return
    deadline = time.monotonic() + 30
    while ray.available_resources().get("CPU", 0) < ray.cluster_resources().get("CPU", 0):
        assert time.monotonic() < deadline, (ray.available_resources(), ray.cluster_resources())
        time.sleep(0.5)


def figures(pattern: str, text: str) -> list[float]:
    """The numbers that ``pattern`` (``NUMBER`` where each one stands) captures in ``text``, each checked finite
    and positive."""
    found = re.findall(pattern.replace("NUMBER", NUMBER), text)
    values = [float(value) for match in found for value in (match if isinstance(match, tuple) else (match,))]
    assert found and all(math.isfinite(value) and value > 0 for value in values), (pattern, text)
    return values


def in_process(main, argv: list[str], capsys) -> str:
    """What ``main(argv)`` printed."""
    main(argv)
    return capsys.readouterr().out


def tiny_run_on(session_ray, module: str) -> str:
    """What ``module.main(["--tiny"])`` printed in a fresh Python attached to the session's Ray."""
    code = (f"import sys, ray; ray.init(address={session_ray.get_runtime_context().gcs_address!r}, "
            f"log_to_driver=False); from {module} import main; main(sys.argv[1:])")
    done = subprocess.run([sys.executable, "-c", code, "--tiny"], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


# The tests on the session's Ray come first. Its services start in the background once the tests are
# collected (tests/conftest.py), creating pytest's base temporary folder as they do; a first test that
# asks for one of its own meanwhile races them (FileExistsError where --basetemp exists), while one
# that asks for `ray_local` waits for them.


@pytest.mark.slow
@pytest.mark.integration
def test_incremental_reruns_nothing_then_only_the_new_images(ray_local):
    from benchmarks.incremental import NEW_IMAGES

    out = tiny_run_on(ray_local, "benchmarks.incremental")
    assert re.search(r"first run: +8 images in", out)
    assert re.search(r"unchanged rerun: +0 images in", out)
    assert re.search(rf"{NEW_IMAGES} new images: +{NEW_IMAGES} images in", out)
    figures(r"unchanged / first = NUMBER", out)


@pytest.mark.slow
@pytest.mark.integration
def test_ledger_scale_reruns_an_output_with_a_history(ray_local):
    out = tiny_run_on(ray_local, "benchmarks.ledger_scale")
    [row] = [json.loads(line) for line in out.splitlines() if line.startswith('{"history"')]
    assert row["history"] == 1000 and row["listing"]["rows"] == 1000
    assert row["unchanged"]["processed"] == 0 and row["grown"]["processed"] == 8
    assert row["unchanged"]["images"] == 1000 and row["grown"]["images"] == 1008
    for measured in row.values():
        if isinstance(measured, dict):
            assert measured["seconds"] > 0 and measured["peak_rss_mb"] > 0, measured
    assert re.search(r"^\| 1,000 \| .* \| \S+ \(8 new\) \|", out, re.MULTILINE)


@pytest.mark.slow
@pytest.mark.integration
def test_read_throughput_compares_the_corpus_layer_with_plain_gets(ray_local, s3_server, capsys):
    from benchmarks.read_throughput import measure, parse_args

    measure(s3_server, parse_args(["--tiny"]))
    out = capsys.readouterr().out
    assert len(re.findall(r"(?:plain boto3, 16 threads|corpus layer \(read_corpus\)) +32 images in", out)) == 2
    figures(r"ratio corpus / plain: NUMBER", out)
    for objects in (20, 40):
        figures(rf"(?m)^ +{objects} objects: +NUMBER s", out)


@pytest.mark.slow
@pytest.mark.integration
def test_segment_throughput_compares_the_job_with_the_pure_forward_pass(ray_local):
    out = tiny_run_on(ray_local, "benchmarks.segment_throughput")
    assert len(figures(r"\(a\) pure forward: +NUMBER images/s", out)) == 2
    figures(r"\(b\) naive sequential: +NUMBER images/s", out)
    figures(r"\(c\) segment_bucket job: +NUMBER images/s +c/a = NUMBER +c/b = NUMBER", out)
    figures(r"c/a per round: NUMBER; median NUMBER", out)


@pytest.mark.slow
@pytest.mark.integration
def test_photo_throughput_costs_each_kind_of_photo_and_runs_the_job(ray_local):
    from benchmarks.photo_throughput import KINDS

    out = tiny_run_on(ray_local, "benchmarks.photo_throughput")
    assert "default FCN-8s" in out and "paper-size" not in out
    for kind in KINDS:  # the default post-process agrees with the exact one; its pixel counts sum to H x W
        [agreement] = re.findall(rf"(?m)^{re.escape(kind)} .* (\S+) +ok +\S+$", out)
        assert 99 <= float(agreement) <= 100, out
    figures(r"job / forward median NUMBER, steady NUMBER, over 1 round\(s\) of 4 photos", out)


@pytest.mark.slow
@pytest.mark.integration
def test_train_throughput_compares_the_job_with_a_plain_loop(ray_local):
    out = tiny_run_on(ray_local, "benchmarks.train_throughput")
    figures(r"\(b\) train_fcn.py, 1 worker\(s\) x 2 threads: +NUMBER images/s +ratio b/a = NUMBER", out)
    figures(r"1 worker\(s\): b/a per round NUMBER; median NUMBER", out)
    assert len(figures(r"\(a\) plain PyTorch loop, .*: +NUMBER images/s", out)) == 2


@pytest.mark.slow
@pytest.mark.integration
def test_variants_trains_the_first_stage_and_scores_it(ray_local):
    out = tiny_run_on(ray_local, "benchmarks.variants")
    [(start, metrics)] = re.findall(r"(?m)^fcn32s +(\S+) +\S+ +(.*?) +\S+$", out)
    assert start == "-"
    assert all(0 <= float(value) <= 1 for value in metrics.split()), metrics  # the paper's four metrics
    assert re.search(r"total \S+ minutes; FCN-32s mean IU \S+ .*; ordering 32s: yes", out)


@pytest.mark.slow
def test_cpu_allocator_times_each_setting_in_a_fresh_process(capsys):
    from benchmarks.cpu_allocator import main

    out = in_process(main, ["--tiny"], capsys)
    for setting in ("glibc defaults", "MALLOC_ENV"):
        figures(rf"{setting} +NUMBER images/s", out)
    figures(r"MALLOC_ENV / glibc defaults: NUMBERx \(medians of 1\)", out)


def test_fault_report_prints_a_row_per_scenario_and_the_totals(tmp_path, capsys):
    from benchmarks.fault_report import main

    records = [
        {"kind": "security", "scenario": "wrong secret", "exit_codes": [2], "detail": "one line", "outcome": "passed"},
        {"kind": "fault", "scenario": "S3 down | then up", "inputs": 8, "lost": 0, "duplicated": 0,
         "exit_codes": [2, 0], "detail": "retried", "outcome": "passed"},
        {"kind": "input", "scenario": "odd files", "inputs": 3, "lost": 0, "duplicated": 1, "exit_codes": [0],
         "outcome": "failed"},
    ]
    path = tmp_path / "fault-report.json"
    path.write_text(json.dumps(records))
    assert main(["--from-json", str(path)]) == 1  # a scenario failed
    lines = capsys.readouterr().out.splitlines()
    assert lines[2:5] == [
        "| fault | S3 down \\| then up | 8 | 0 | 0 | 2, 0 | retried | passed |",
        "| input | odd files | 3 | 0 | 1 | 0 | — | failed |",
        "| security | wrong secret | — | — | — | 2 | one line | passed |",
    ]
    assert lines[-1] == ("Faults injected: 1 · bad inputs tried: 3 · images lost: 0 · images duplicated: 1 · "
                         "scenarios passed: 2 of 3")


def test_review_signal_scores_the_photo_and_the_scenes(tiny_checkpoint, capsys):
    from benchmarks.review_signal import main

    out = in_process(main, ["--tiny", "--model", tiny_checkpoint], capsys)
    assert "reference: 12 training scenes" in out
    [novelty, confidence, margin] = figures(r"grace_hopper +NUMBER +NUMBER +NUMBER", out)
    assert 0 < confidence <= 1 and 0 < margin <= 1
    [median, highest] = figures(r"val \(4\), (?:median|highest) +NUMBER", out)
    assert median <= highest < novelty  # even a reference of 12 scenes tells the photo apart
    assert "photos among the 1 most novel of 5 images: 1/1" in out
    assert "ROC AUC, photos vs validation scenes: 1.000" in out
    assert re.search(r"listed at the default --novelty-threshold \S+: 1/1 photos, \d/4 validation scenes", out)
