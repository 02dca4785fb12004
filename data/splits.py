"""The fixed train/val/test split: made once, before any genre filtering, multilabel-stratified."""

from __future__ import annotations

import numpy as np

from genretune.data.dataset import TEST, TRAIN, VAL

DEFAULT_FRACTIONS = (0.70, 0.15, 0.15)


def stratified_split(
    labels: np.ndarray, seed: int, fractions: tuple[float, float, float] = DEFAULT_FRACTIONS
) -> np.ndarray:
    """(N,) int8 of TRAIN/VAL/TEST by iterative stratification (Sechidis et al. 2011).

    Two stratified cuts: train vs the rest, then the rest into val and test. Split sizes are
    approximate because iterative stratification balances label counts, not row counts.
    """
    # Imported here: it pulls in scikit-learn, which every other command can do without.
    from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

    n = labels.shape[0]
    if n < 3:
        raise ValueError(f"need at least 3 tracks to split into train/val/test, got {n}")
    train_frac, val_frac, test_frac = fractions
    split = np.full(n, TRAIN, dtype=np.int8)
    holdout = val_frac + test_frac
    first = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=holdout, random_state=seed)
    _, rest = next(first.split(np.zeros(n), labels))
    second = MultilabelStratifiedShuffleSplit(
        n_splits=1, test_size=test_frac / holdout, random_state=seed + 1
    )
    val_pos, test_pos = next(second.split(np.zeros(len(rest)), labels[rest]))
    split[rest[val_pos]] = VAL
    split[rest[test_pos]] = TEST
    return split
