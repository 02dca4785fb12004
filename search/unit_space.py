"""Optuna distributions mapped to and from the unit interval, on their own scale (log where
the distribution is log), the way Optuna's samplers draw from them."""

from __future__ import annotations

import math
from typing import Any

import optuna.distributions as od


def _span(dist: od.FloatDistribution | od.IntDistribution) -> tuple[float, float, bool]:
    low, high = float(dist.low), float(dist.high)
    if isinstance(dist, od.IntDistribution):
        # Optuna draws an integer from [low - 0.5, high + 0.5] and rounds it.
        low, high = low - 0.5, high + 0.5
    if dist.log:
        return math.log(max(low, 1e-12)), math.log(high), True
    return low, high, False


def from_unit(dist: od.BaseDistribution, u: float) -> Any:
    """The value at position u in [0, 1) of the distribution."""
    if isinstance(dist, od.CategoricalDistribution):
        return dist.choices[min(int(u * len(dist.choices)), len(dist.choices) - 1)]
    low, high, log = _span(dist)
    x = low + u * (high - low)
    value = math.exp(x) if log else x
    if isinstance(dist, od.IntDistribution):
        return int(min(max(round(value), dist.low), dist.high))
    step = getattr(dist, "step", None)
    if step:
        value = dist.low + round((value - dist.low) / step) * step
    return float(min(max(value, dist.low), dist.high))


def to_unit(dist: od.BaseDistribution, value: Any) -> float:
    """Position of a value in [0, 1] (categorical: the centre of its cell)."""
    if isinstance(dist, od.CategoricalDistribution):
        return (dist.choices.index(value) + 0.5) / len(dist.choices)
    low, high, log = _span(dist)
    x = math.log(max(float(value), 1e-12)) if log else float(value)
    return min(max((x - low) / (high - low), 0.0), 1.0) if high > low else 0.5
