"""The measures the simulated and the real benchmarks share, in one place: how soon a search
first reaches a target value (random-fifo's final best, same seed), in budget fractions or in
seconds. Both benchmarks count one result as one trial-epoch and divide by the nominal budget.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

TOLERANCE = 1e-12  # a tie counts as reached
NEVER = float("inf")


def first_reach(values: Sequence[float] | np.ndarray, target: float, budget: int) -> float:
    """(i + 1) / budget for the first of the first `budget` results whose value is at or
    above `target`; NEVER when none is. `values`: one per result in the order they came (raw
    values or their best-so-far give the same answer; a NaN never reaches)."""
    v = np.asarray(values, dtype=float)[:budget]
    hit = np.flatnonzero(v >= target - TOLERANCE)
    return float((hit[0] + 1) / budget) if len(hit) else NEVER


def seconds_to_reach(values: np.ndarray, seconds: np.ndarray, target: float) -> float:
    """The (simulated) time of the first result at or above `target`; NEVER when none is."""
    hit = np.flatnonzero(np.asarray(values, dtype=float) >= target - TOLERANCE)
    return float(seconds[hit[0]]) if len(hit) else NEVER


def final_best(values: Sequence[float] | np.ndarray, budget: int) -> float:
    """The best of the first `budget` results (NaN ignored): a search's final best within its
    budget, the target the others are measured against."""
    return float(np.nanmax(np.asarray(values, dtype=float)[:budget]))
