"""``--tiny``: every benchmark's check that it runs, at its smallest sizes and 1 round.

The test suite runs each benchmark so (``tests/benchmarks``), so that a change elsewhere cannot leave
one broken unnoticed; a tiny run's figures mean nothing. This module imports nothing heavy: the
drivers that `benchmarks.ledger_scale` measures parse their arguments with it.
"""
from __future__ import annotations

import argparse

# The synthetic corpus of a tiny run, where the full size makes one of 200 + 50 scenes of 64-160 px:
# a few more training scenes than a novelty reference needs (8).
CORPUS = {"num_train": 12, "num_val": 4, "min_size": 48, "max_size": 64}


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None, **tiny) -> argparse.Namespace:
    """``parser``'s arguments plus ``--tiny``, which makes the ``tiny`` values the defaults (flags given still win)."""
    parser.add_argument("--tiny", action="store_true", help="smallest sizes, 1 round: a check that it runs")
    args = parser.parse_args(argv)
    if args.tiny:
        parser.set_defaults(**tiny)
        args = parser.parse_args(argv)
    return args
