"""How hard a storage operation is tried: the policy, and the loop every store runs operations through."""
from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from pipelines.errors import StorageUnavailableError

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How hard a store tries before giving up on a transient failure.

    The defaults ride out a store that is down for about 10 s (jittered sleeps of up to 0.5, 1, 2,
    4 and 8 s between six attempts) and then fail with `StorageUnavailableError`.
    """

    attempts: int = 6
    base_delay_s: float = 0.5
    max_delay_s: float = 8.0

    def __post_init__(self):
        if self.attempts < 1 or self.base_delay_s < 0 or self.max_delay_s < self.base_delay_s:
            raise ValueError(f"need attempts >= 1 and 0 <= base_delay_s <= max_delay_s, got {self}")


DEFAULT_RETRY = RetryPolicy()


def causes(error: BaseException) -> Iterator[BaseException]:
    """``error`` and the chain of errors behind it (clients wrap the one that tells what happened)."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def with_retries(fn: Callable[[], T], policy: RetryPolicy, *, is_transient: Callable[[Exception], bool],
                 is_unreachable: Callable[[Exception], bool], endpoint: str, hint: str) -> T:
    """Call ``fn`` until it succeeds, retrying transient errors with exponential backoff and jitter.

    Permanent errors (not found, access denied, bad input) propagate at once. When every attempt
    failed because the store could not be reached, raises `StorageUnavailableError` naming
    ``endpoint`` and ending with ``hint``; when it kept answering with 5xx or throttling, re-raises
    its last error.
    """
    started = time.monotonic()
    for attempt in range(1, policy.attempts + 1):
        try:
            return fn()
        except Exception as error:
            if not is_transient(error):
                raise
            if attempt == policy.attempts:
                if is_unreachable(error):
                    raise StorageUnavailableError(
                        f"could not reach {endpoint} after {policy.attempts} attempts over "
                        f"{time.monotonic() - started:.1f} s ({type(error).__name__}); {hint}") from error
                raise
            delay = min(policy.max_delay_s, policy.base_delay_s * 2 ** (attempt - 1))
            time.sleep(delay * random.uniform(0.5, 1.0))
    raise AssertionError("unreachable: the loop returns or raises")
