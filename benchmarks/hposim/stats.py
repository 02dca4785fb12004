"""Medians with bootstrap confidence intervals over paired seeds."""

from __future__ import annotations

import numpy as np

BOOTSTRAP = 2000


def median_ci(values, level: float = 0.95, seed: int = 0) -> dict[str, float | None]:
    """Median and percentile-bootstrap CI of the median (resampling seeds). Infinite values
    (a goal never reached) take part as such; a median or bound that is infinite is None."""
    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        return {"median": None, "ci_low": None, "ci_high": None}
    rng = np.random.default_rng(seed)
    resampled = np.median(x[rng.integers(len(x), size=(BOOTSTRAP, len(x)))], axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(resampled, [tail, 100 - tail], method="lower")
    as_float = lambda v: float(v) if np.isfinite(v) else None  # noqa: E731
    return {"median": as_float(np.median(x)), "ci_low": as_float(low), "ci_high": as_float(high)}


def band(curves: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """The central `level` band of (seeds, T) curves at each T."""
    tail = (1 - level) / 2 * 100
    return np.percentile(curves, tail, axis=0), np.percentile(curves, 100 - tail, axis=0)


def median_band(curves: np.ndarray, level: float = 0.95, seed: int = 0):
    """(median, CI low, CI high) of the median of (seeds, T) curves at each T."""
    rng = np.random.default_rng(seed)
    n = curves.shape[0]
    idx = rng.integers(n, size=(400, n))
    resampled = np.median(curves[idx], axis=1)  # (400, T)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(resampled, [tail, 100 - tail], axis=0)
    return np.median(curves, axis=0), low, high
