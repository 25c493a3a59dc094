"""pipelines.runtime.progress: the lines a person follows a long job by, without Ray."""
import io
import os
import select

from pipelines.runtime.progress import Progress, ProgressCounter, StepCounter, format_duration, progress_line


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_durations_read_at_the_precision_a_person_plans_by():
    assert [format_duration(s) for s in (0.4, 42, 185, 7620)] == ["0 s", "42 s", "3 min 05 s", "2 h 07 min"]


def test_a_line_has_counts_errors_rate_and_an_eta_only_when_the_total_is_known():
    assert progress_line("segmented", 0, 610, 0, None) == "segmented 0/610 images (0 errors), starting"
    assert progress_line("segmented", 256, 610, 3, 7.08) == \
        "segmented 256/610 images (3 errors), 7.1 images/s, ETA 50 s"
    assert progress_line("segmented", 256, None, 0, 7.0) == "segmented 256 images (0 errors), 7.0 images/s"
    assert progress_line("segmented", 8, 610, 0, None) == "segmented 8/610 images (0 errors)"  # no rate yet
    assert progress_line("evaluated", 12, 50, None, 2.0) == "evaluated 12/50 images, 2.0 images/s, ETA 19 s"
    assert progress_line("trained", 17, 36, None, 2.0, "steps", "epoch 2/3, step 5/12") == \
        "trained 17/36 steps (epoch 2/3, step 5/12), 2.0 steps/s, ETA 10 s"


def test_off_a_terminal_a_line_every_few_seconds_with_the_rate_measured_after_start_up():
    clock, lines = FakeClock(), []
    progress = Progress("segmented", total=100, log=lines.append, stream=io.StringIO(), every_s=5, clock=clock)
    clock.now += 30  # start-up: workers and the model loading, nothing finished
    progress.report(0)
    assert lines == ["segmented 0/100 images (0 errors), starting"]
    clock.now += 1
    progress.report(10)  # the first images: the rate is measured from here
    clock.now += 2
    progress.report(20)  # within 5 s of the last line: nothing printed
    assert len(lines) == 1
    clock.now += 3
    progress.report(40, errors=2)
    # 30 images in 5 s since the first ones, not 40 in 36 s since the job started.
    assert lines[-1] == "segmented 40/100 images (2 errors), 6.0 images/s, ETA 10 s"
    clock.now += 5
    progress.report(150)  # a retried batch counted twice never shows more than the total
    assert lines[-1].startswith("segmented 100/100 images")
    clock.now += 5
    progress.report(100)  # done: the wrap-up is not progress, said again with a falling rate
    assert len(lines) == 3


def test_the_counter_adds_what_stages_report():
    counter = ProgressCounter()
    counter.add(8)
    counter.add(8, 1)
    assert counter.totals() == (16, 1)


def test_the_step_counter_hands_each_line_over_once():
    counter = StepCounter()
    counter.at(1, 5)
    counter.say("epoch 1/3: loss 0.5, 3.0 images/s")
    assert counter.read() == (1, 5, ["epoch 1/3: loss 0.5, 3.0 images/s"])
    assert counter.read() == (1, 5, [])


def test_a_terminal_that_reports_no_size_still_gets_a_bar():
    """A pseudo-terminal nobody sized reports 0x0; tqdm drew nothing there (a run showed only its summary)."""
    parent, child = os.openpty()  # never sized: 0 columns, 0 rows
    try:
        with open(child, "w", closefd=False) as terminal:
            progress = Progress("segmented", total=10, stream=terminal)
            progress.report(4)
            progress.close()
        drawn = b""
        while select.select([parent], [], [], 0.2)[0]:
            drawn += os.read(parent, 65536)
    finally:
        os.close(parent)
        os.close(child)
    assert "\rsegmented:  40%|" in drawn.decode() and "4/10" in drawn.decode()
