"""Class weights for BCE-with-logits, softened as in the hand-run log.

`--pos-weight-power` and `--pos-weight-cap` tame the 126x imbalance of the rare genres.
"""

from __future__ import annotations

import numpy as np


def calculate_pos_weight(
    counts: np.ndarray, n: int, power: float = 1.0, cap: float | None = None
) -> np.ndarray:
    """pos_weight_c = min(cap, (neg_c / pos_c) ** power), float32.

    power 1 is the raw ratio, 0.5 its square root, 0 gives all ones. A genre with no positive
    training track gets the cap (or the largest finite weight with no cap): it cannot be learnt,
    but it must not produce an infinite loss.
    """
    counts = np.asarray(counts, dtype=np.float64)
    if power < 0:
        raise ValueError("pos_weight power must be >= 0")
    if cap is not None and cap <= 0:
        raise ValueError("pos_weight cap must be > 0")
    positive = counts > 0
    weights = np.ones_like(counts)
    ratio = (n - counts[positive]) / counts[positive]
    weights[positive] = np.maximum(ratio, 0.0) ** power
    if not positive.all():
        weights[~positive] = cap if cap is not None else weights[positive].max(initial=1.0)
    if cap is not None:
        weights = np.minimum(weights, cap)
    return weights.astype(np.float32)


def describe_pos_weight(weights: np.ndarray, genres: tuple[str, ...] | list[str]) -> str:
    """The log's --debug summary: min/median/max, max/min ratio and the 10 largest weights."""
    lo, med, hi = float(weights.min()), float(np.median(weights)), float(weights.max())
    lines = [
        f"pos_weight: min {lo:.2f}, median {med:.2f}, max {hi:.2f}, max/min {hi / lo:.1f}x",
        "largest pos_weight:",
    ]
    for i in np.argsort(-weights, kind="stable")[:10]:
        lines.append(f"  {genres[i]:<24s} {weights[i]:8.2f}")
    return "\n".join(lines)
