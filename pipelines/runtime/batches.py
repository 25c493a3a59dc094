"""Small rules for the numpy batches that Ray Data hands to every stage."""
from __future__ import annotations

import numpy as np


def object_array(items: list) -> np.ndarray:
    """A 1-D object array of ``items`` (numpy would otherwise stack equal-shaped arrays into one)."""
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array


def is_error(value) -> bool:
    """Whether an ``error`` cell holds a reason. Nulls cross Ray Data's numpy batches as None or NaN."""
    return isinstance(value, str) and bool(value)
