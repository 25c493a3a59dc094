"""The fast-answers benchmark at a tiny size: every job's --help, a mistake per job, a night with nothing new.

The timings are the benchmark's to print (benchmarks/README.md has the figures); this test keeps it
running, and checks what each run answered: a mistake is one ``error:`` line, an unchanged night ends
as a recorded run that imported neither Ray nor torch.
"""
import pytest

from benchmarks.fast_answers import JOBS, main


@pytest.mark.slow
@pytest.mark.integration
def test_the_fast_answers_benchmark_runs_and_each_answer_is_the_expected_one():
    rows, idle_imports = main(["--tiny"])
    assert sorted(what for kind, what, _, _ in rows if kind == "help") == sorted(f"{job} --help" for job in JOBS)
    mistakes = {what: line for kind, what, _, line in rows if kind == "mistake"}
    assert len(mistakes) == 10 and all(line.startswith("error: ") for line in mistakes.values()), mistakes
    assert "no-such-folder" in mistakes["nightly_label.py, --input missing"]
    assert "no registered model named 'fast-answersx'" in mistakes["nightly_label.py, --model-name misspelt"]
    [(_, _, _, night)] = [row for row in rows if row[0] == "nothing new"]
    assert night.startswith("MLflow run: ")
    assert idle_imports == ["mlflow"]  # neither Ray nor torch: no cluster, no model
