"""Learning curves for replayed trials: recorded ones from the bank, or a surrogate's.

A configuration recorded in the bank gets one of its recorded runs. Any other configuration (a
searcher draws continuous values, so nearly all of them) gets the surrogate's curve: the
distance-weighted mean of its nearest bank configurations' curves, plus a noise curve drawn from
the bank's repeated runs (a run minus the mean of its configuration's runs), so a surrogate
trial is as noisy, epoch to epoch and rule to rule, as a recorded one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna.distributions as od

from genretune.search.unit_space import to_unit
from hposim.bank import RULES, CurveBank, rule_index

# The validation sweep's order of preference among equal F1s: threshold-only rules, then
# top-K-only, then combined, each in its grid order (model.decision.sweep_decision_rules).
_SWEEP_ORDER = np.array(
    [i for i, (t, k) in enumerate(RULES) if k is None]
    + [i for i, (t, k) in enumerate(RULES) if t is None]
    + [i for i, (t, k) in enumerate(RULES) if t is not None and k is not None]
)


def tuned_rules(val: np.ndarray) -> np.ndarray:
    """(E,) the validation-optimal rule of each epoch of a (E, rules) F1 array."""
    return _SWEEP_ORDER[np.argmax(val[:, _SWEEP_ORDER], axis=1)]


@dataclass(frozen=True)
class TrialCurve:
    """One trial's every epoch: F1 at its own rule and at the tuned rule, and the rest."""

    own_val: np.ndarray  # (E,)
    own_test: np.ndarray
    tuned_val: np.ndarray
    tuned_test: np.ndarray
    val_pr_auc: np.ndarray
    epoch_seconds: np.ndarray
    run: int | None  # the bank run it replays, None = surrogate

    def trained_to_end(self, objective: str, patience: int) -> tuple[int, float, float]:
        """(best epoch, its validation objective, test F1) of `genretune train`: patience on
        the objective, the best epoch's weights, the rule the objective scores (the configured
        one, or for tuned_val_f1 the rule tuned on validation at that epoch)."""
        val = self.tuned_val if objective == "tuned_val_f1" else self.own_val
        test = self.tuned_test if objective == "tuned_val_f1" else self.own_test
        best, best_epoch, since = -np.inf, 0, 0
        for epoch, value in enumerate(val, start=1):
            if value > best:
                best, best_epoch, since = value, epoch, 0
            else:
                since += 1
            if since >= patience:
                break
        return best_epoch, float(val[best_epoch - 1]), float(test[best_epoch - 1])


def _curve(val, test, tuned, pr_auc, secs, rule: int, run: int | None) -> TrialCurve:
    epochs = np.arange(val.shape[0])
    return TrialCurve(
        own_val=val[:, rule],
        own_test=test[:, rule],
        tuned_val=val[epochs, tuned],
        tuned_test=test[epochs, tuned],
        val_pr_auc=pr_auc,
        epoch_seconds=secs,
        run=run,
    )


class Features:
    """Knob values -> coordinates in [0, 1]: each knob on its distribution's scale, except the
    genre filter, placed by how many genres it keeps (min-samples values that keep the same
    genres train identically)."""

    def __init__(self, bank: CurveBank, space: dict[str, od.BaseDistribution]) -> None:
        self.names = bank.knob_names
        self.space = space
        self.counts = np.sort(bank.genre_counts)

    def kept(self, min_samples: float) -> int:
        return int(len(self.counts) - np.searchsorted(self.counts, max(min_samples, 1), "left"))

    def __call__(self, knobs: dict[str, Any]) -> np.ndarray:
        out = []
        for name in self.names:
            dist = self.space[name]
            if name == "min_samples_per_genre":
                lo, hi = self.kept(dist.high), self.kept(dist.low)
                kept = self.kept(knobs[name])
                out.append((np.log(kept) - np.log(lo)) / max(np.log(hi) - np.log(lo), 1e-12))
            else:
                out.append(to_unit(dist, knobs[name]))
        return np.array(out)


@dataclass(frozen=True)
class Configs:
    """The bank's distinct configurations with their runs averaged over training seeds."""

    knobs: list[dict[str, Any]]
    x: np.ndarray  # (C, K) features
    val: np.ndarray  # (C, E, rules) mean over the configuration's runs
    test: np.ndarray
    pr_auc: np.ndarray  # (C, E)
    secs: np.ndarray  # (C, E)
    runs: list[np.ndarray]  # bank runs of each configuration


def distinct_configs(bank: CurveBank, features: Features) -> Configs:
    keys: dict[tuple, list[int]] = {}
    for run in range(bank.n_runs):
        keys.setdefault(tuple(np.round(bank.knobs[run], 12)), []).append(run)
    runs = [np.array(r) for r in keys.values()]
    knobs = [bank.knob_dict(int(r[0])) for r in runs]
    mean = lambda a: np.stack([a[r].mean(axis=0) for r in runs])  # noqa: E731
    return Configs(
        knobs=knobs,
        x=np.stack([features(k) for k in knobs]),
        val=mean(bank.val_f1),
        test=mean(bank.test_f1),
        pr_auc=mean(bank.val_pr_auc),
        secs=mean(bank.epoch_seconds),
        runs=runs,
    )


def noise_residuals(bank: CurveBank, configs: Configs) -> list[tuple[np.ndarray, ...]]:
    """(val, test, pr_auc) deviations of each repeated run from its configuration's mean,
    scaled by sqrt(n / (n - 1)) so they have the spread of one run around the true mean."""
    out = []
    for c, runs in enumerate(configs.runs):
        if len(runs) < 2:
            continue
        scale = np.sqrt(len(runs) / (len(runs) - 1))
        for run in runs:
            out.append(
                (
                    (bank.val_f1[run] - configs.val[c]) * scale,
                    (bank.test_f1[run] - configs.test[c]) * scale,
                    (bank.val_pr_auc[run] - configs.pr_auc[c]) * scale,
                )
            )
    return out


@dataclass(frozen=True)
class KnnSurrogate:
    """Distance-weighted mean of the k nearest configurations (weighted feature distance)."""

    x: np.ndarray
    weights: np.ndarray  # per feature
    k: int
    power: float  # inverse-distance weighting exponent

    def neighbours(self, x: np.ndarray, exclude: np.ndarray | None = None):
        d = np.sqrt((((self.x - x[None, :]) ** 2) * self.weights[None, :]).sum(axis=1))
        if exclude is not None:
            d = np.where(exclude, np.inf, d)
        k = min(self.k, int(np.isfinite(d).sum()))
        idx = np.argpartition(d, k - 1)[:k]
        w = 1.0 / (d[idx] + 1e-3) ** self.power
        return idx, w / w.sum()


class CurveSource:
    """Curves for the configurations a replayed search proposes."""

    def __init__(
        self,
        bank: CurveBank,
        space: dict[str, od.BaseDistribution],
        surrogate: KnnSurrogate | None = None,
        noise: bool = True,
    ) -> None:
        self.bank = bank
        self.features = Features(bank, space)
        self.configs = distinct_configs(bank, self.features)
        self.residuals = noise_residuals(bank, self.configs) if noise else []
        self.surrogate = surrogate or default_surrogate(self.configs.x)

    def curve(self, config: dict[str, Any], rng: np.random.Generator) -> TrialCurve:
        rule = rule_index(config.get("threshold"), config.get("top_k"))
        knobs = {k: config[k] for k in self.bank.knob_names}
        runs = self.bank.runs_of(knobs)
        b = self.bank
        if len(runs):
            run = int(rng.choice(runs))
            return _curve(
                b.val_f1[run],
                b.test_f1[run],
                b.tuned_rule[run],
                b.val_pr_auc[run],
                b.epoch_seconds[run],
                rule,
                run,
            )
        val, test, pr_auc, secs = self.predict(self.features(knobs))
        if self.residuals:
            dv, dt, dp = self.residuals[int(rng.integers(len(self.residuals)))]
            val, test, pr_auc = val + dv, test + dt, pr_auc + dp
        val, test = np.clip(val, 0, 1), np.clip(test, 0, 1)
        return _curve(val, test, tuned_rules(val), pr_auc, secs, rule, None)

    def predict(self, x: np.ndarray, exclude: np.ndarray | None = None):
        idx, w = self.surrogate.neighbours(x, exclude)
        c = self.configs
        return (
            np.tensordot(w, c.val[idx], axes=1),
            np.tensordot(w, c.test[idx], axes=1),
            w @ c.pr_auc[idx],
            w @ c.secs[idx],
        )


def default_surrogate(x: np.ndarray) -> KnnSurrogate:
    # Chosen by benchmarks/simulate.py's k-fold check (see benchmarks/README.md).
    return KnnSurrogate(x=x, weights=np.ones(x.shape[1]), k=5, power=1.0)
