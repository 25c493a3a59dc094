"""images/s of an evaluation from the model stage's per-batch timing rows, without Ray.

The rows imitate what made compare_models report 7.0 and 81.4 images/s for one architecture
(issue #12): every actor's first batch is slow (first forward pass), the rest run at a steady pace.
"""
import math

import numpy as np
import pytest

from pipelines.evaluation.evaluate import steady_images_per_second


def _rows(batches: list[tuple[str, int, float, float]]) -> dict[str, np.ndarray]:
    """(actor, images, started, finished) per batch, as the columns `score_labelled_set` collects."""
    actors, images, started, finished = zip(*batches)
    return {"actors": np.array(actors), "images": np.array(images, dtype=np.int64),
            "started": np.array(started), "finished": np.array(finished)}


def test_each_actors_first_batch_is_left_out():
    # Two actors: a 5 s warm-up batch each, then 4-image batches every 0.5 s from t=5 to t=7.
    warm = [("a", 4, 0.0, 5.0), ("b", 4, 0.2, 5.0)]
    steady = [(actor, 4, 5.0 + 0.5 * step, 5.5 + 0.5 * step) for step in range(4) for actor in "ab"]
    rows = _rows(warm + steady)
    assert steady_images_per_second(**rows) == pytest.approx(32 / 2.0)
    # The whole-stage figure the evaluation reported before: warm-up dominates it.
    assert rows["images"].sum() / (rows["finished"].max() - rows["started"].min()) == pytest.approx(40 / 7.0)


def test_warm_up_is_found_by_start_time_whatever_the_row_order():
    rows = _rows([("b", 2, 3.0, 3.1), ("a", 2, 1.0, 1.1), ("b", 2, 0.5, 2.9), ("a", 2, 0.0, 0.9),
                  ("a", 2, 1.2, 1.3)])
    # Timed: a's batches at 1.0 and 1.2, b's at 3.0; 6 images from 1.0 to 3.1.
    assert steady_images_per_second(**rows) == pytest.approx(6 / 2.1)


def test_an_actor_that_joins_late_has_its_own_warm_up():
    # The pool grows with the backlog: actor b starts at t=2 and warms up while a keeps working.
    rows = _rows([("a", 1, 0.0, 1.0), ("a", 1, 1.0, 2.0), ("a", 1, 2.0, 3.0), ("b", 1, 2.0, 4.0),
                  ("a", 1, 3.0, 4.0), ("b", 1, 4.0, 5.0)])
    assert steady_images_per_second(**rows) == pytest.approx(4 / 4.0)


@pytest.mark.parametrize("batches", [
    [("a", 8, 0.0, 1.0)],                          # one batch
    [("a", 8, 0.0, 1.0), ("b", 8, 0.1, 1.2)],      # one batch per actor
    [],                                            # nothing scored
])
def test_nothing_left_to_time_is_nan(batches):
    rows = _rows(batches) if batches else {name: np.empty(0) for name in ("actors", "images", "started", "finished")}
    assert math.isnan(steady_images_per_second(**rows))
