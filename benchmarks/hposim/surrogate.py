"""Choosing and checking the surrogate: k-fold cross-validation over the bank's configurations.

The score is the error on what a search ranks trials by: each configuration's best-epoch
validation F1, under every decision rule of the search space. A held-out configuration is
predicted from the others only (all its runs are held out together).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

import numpy as np
from scipy.stats import spearmanr

from hposim.bank import RULES, rule_index
from hposim.curves import Configs, KnnSurrogate

SPACE_RULES = np.array([i for i, (t, _) in enumerate(RULES) if t is not None])
BASELINE_RULE = rule_index(0.5, None)


@dataclass(frozen=True)
class SurrogateCheck:
    spearman: float  # rank correlation of best-epoch val F1 at threshold 0.5
    mae: float  # mean absolute error of it
    mae_all_rules: float  # mean over the search space's rules
    noise_floor_mae: float  # the MAE of a perfect mean predictor, from the repeats
    folds: int


def _fold_ids(n: int, folds: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).permutation(n) % folds


def cv_predictions(configs: Configs, model: KnnSurrogate, folds: int, seed: int = 0):
    """(C, rules) predicted and observed best-epoch validation F1 of each configuration."""
    fold = _fold_ids(len(configs.x), folds, seed)
    observed = configs.val.max(axis=1)
    predicted = np.empty_like(observed)
    for c in range(len(configs.x)):
        idx, w = model.neighbours(configs.x[c], exclude=fold == fold[c])
        predicted[c] = np.tensordot(w, configs.val[idx], axes=1).max(axis=0)
    return predicted, observed


def check(configs: Configs, model: KnnSurrogate, noise_floor: float, folds: int = 10):
    predicted, observed = cv_predictions(configs, model, folds)
    p, o = predicted[:, BASELINE_RULE], observed[:, BASELINE_RULE]
    err_all = np.abs(predicted[:, SPACE_RULES] - observed[:, SPACE_RULES]).mean()
    return SurrogateCheck(
        spearman=float(spearmanr(p, o).statistic),
        mae=float(np.abs(p - o).mean()),
        mae_all_rules=float(err_all),
        noise_floor_mae=noise_floor,
        folds=folds,
    )


def _loss(configs: Configs, model: KnnSurrogate, folds: int) -> float:
    predicted, observed = cv_predictions(configs, model, folds, seed=1)
    return float(np.abs(predicted[:, SPACE_RULES] - observed[:, SPACE_RULES]).mean())


def fit_surrogate(configs: Configs, folds: int = 10) -> KnnSurrogate:
    """k, distance weighting and per-feature weights with the lowest k-fold error (on a fold
    split other than the one `check` reports), by coordinate descent over small grids."""
    n_features = configs.x.shape[1]
    best = KnnSurrogate(configs.x, np.ones(n_features), k=5, power=1.0)
    best_loss = _loss(configs, best, folds)
    for _ in range(2):
        for k, power in itertools.product((2, 3, 5, 8, 12), (0.0, 1.0, 2.0)):
            if k >= len(configs.x):
                continue
            candidate = replace(best, k=k, power=power)
            loss = _loss(configs, candidate, folds)
            if loss < best_loss:
                best, best_loss = candidate, loss
        for j in range(n_features):
            for value in (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0):
                weights = best.weights.copy()
                weights[j] = value
                if not weights.any():
                    continue
                candidate = replace(best, weights=weights)
                loss = _loss(configs, candidate, folds)
                if loss < best_loss:
                    best, best_loss = candidate, loss
    return best


def noise_floor_mae(bank, configs: Configs) -> float:
    """The mean |error| of a perfect surrogate (the true mean curve) on one run's best-epoch
    validation F1 at threshold 0.5, from the repeated configurations: E|X1 - X2| / sqrt(2)
    over pairs of runs of one configuration."""
    best = bank.val_f1[:, :, BASELINE_RULE].max(axis=1)
    diffs = [
        abs(best[a] - best[b])
        for runs in configs.runs
        if len(runs) > 1
        for a, b in itertools.combinations(runs, 2)
    ]
    return float(np.mean(diffs) / np.sqrt(2)) if diffs else float("nan")
