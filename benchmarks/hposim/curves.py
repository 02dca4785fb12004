"""Learning curves for replayed trials: recorded ones from the bank, or a surrogate's.

A configuration recorded in the bank gets one of its recorded runs. Any other configuration (a
searcher draws continuous values, so nearly all of them) gets the surrogate's curve: the
distance-weighted mean of its nearest bank configurations' curves, plus a noise curve drawn from
the bank's repeated runs (a run minus the mean of its configuration's runs).

Two corrections keep that honest (`shrunk_means`, `CurveSource.noise_carried`). A configuration
recorded once is its true curve plus one run's noise, so its curve is first pulled towards its
neighbours' by the share of its deviation that is noise: otherwise a searcher could return to a
lucky run's neighbourhood and find the same luck again, which retraining never repeats. And the
mean still carries some of its neighbours' noise, so the noise curve adds only the variance
that is missing: a surrogate trial is as noisy as a recorded run, not more.

The noise model `pooled` draws any repeated run's residual for any trial. `by-quality-and-seed`
corrects two things real searches show (benchmarks/README.md: Real searches): noise shrinks as
configurations get better (its scale is that of the repeated configurations nearest in quality),
and every trial of a search trains with the search's one training seed, so part of the noise is
shared by all of them (each search draws only residuals of one bank training seed, the search
seed modulo the bank's seeds; paired strategies share it too).
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


NOISE_MODELS = ("pooled", "by-quality-and-seed")
# by-quality-and-seed puts the simulated margins inside the real searches' CIs on both banks;
# result sets made before it became the default record no noise model and used pooled.
DEFAULT_NOISE_MODEL = "by-quality-and-seed"
NEAREST_IN_QUALITY = 8  # repeated configurations whose noise sets the scale (by-quality-and-seed)


def residual_origins(bank: CurveBank, configs: Configs) -> tuple[np.ndarray, np.ndarray]:
    """(configuration index, training seed) of each residual of `noise_residuals`, in order."""
    pairs = [
        (c, int(bank.train_seed[run]))
        for c, runs in enumerate(configs.runs)
        if len(runs) >= 2
        for run in runs
    ]
    return np.array([c for c, _ in pairs], dtype=int), np.array([t for _, t in pairs], dtype=int)


def noise_by_quality(bank: CurveBank, configs: Configs) -> tuple[np.ndarray, np.ndarray]:
    """(quality, noise sd) of each repeated configuration: its mean curve's best validation F1,
    and the spread of its runs' best validation F1 (what a search's pick is chosen on)."""
    quality, sd = [], []
    for c, runs in enumerate(configs.runs):
        if len(runs) >= 2:
            quality.append(float(configs.val[c].max()))
            sd.append(float(np.std([bank.val_f1[run].max() for run in runs], ddof=1)))
    return np.array(quality), np.array(sd)


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
class Means:
    """The surrogate's mean surface: each configuration's averaged curves, pulled towards its
    neighbours' by the share of its deviation from them that is training-seed noise."""

    val: np.ndarray  # (C, E, rules)
    test: np.ndarray
    pr_auc: np.ndarray  # (C, E)
    kept: np.ndarray  # (C,) the share of the configuration's own deviation kept
    n_runs: np.ndarray  # (C,)


def shrunk_means(configs: Configs, model: KnnSurrogate, residuals: list) -> Means:
    """Empirical-Bayes shrinkage. A configuration recorded once is its true curve plus one run's
    noise; left as it is, the surrogate would interpolate that noise, and a searcher could come
    back to a lucky run's neighbourhood and find its luck again, which real training never
    repeats. Each curve keeps tau^2 / (tau^2 + sigma^2 / n) of its deviation from its
    neighbours' mean (itself held out): sigma^2 is one run's noise variance (from the repeated
    configurations), tau^2 the deviations' variance that is not noise."""
    n_runs = np.array([len(r) for r in configs.runs], dtype=float)
    if not residuals:
        ones = np.ones(len(n_runs))
        return Means(configs.val, configs.test, configs.pr_auc, ones, n_runs)
    sigma2 = float(np.mean([np.mean(r[0] ** 2) for r in residuals]))
    loo_val, loo_test, loo_pr, noise_in_loo = [], [], [], []
    for c in range(len(n_runs)):
        idx, w = model.neighbours(configs.x[c], np.arange(len(n_runs)) == c)
        loo_val.append(np.tensordot(w, configs.val[idx], axes=1))
        loo_test.append(np.tensordot(w, configs.test[idx], axes=1))
        loo_pr.append(w @ configs.pr_auc[idx])
        noise_in_loo.append(np.sum(w**2 / n_runs[idx]))
    loo_val, loo_test, loo_pr = np.array(loo_val), np.array(loo_test), np.array(loo_pr)
    deviation = float(np.mean((configs.val - loo_val) ** 2))
    tau2 = max(deviation - sigma2 * float(np.mean(1 / n_runs + np.array(noise_in_loo))), 0.0)
    kept = tau2 / (tau2 + sigma2 / n_runs)
    pull = lambda own, loo: loo + kept.reshape(-1, *[1] * (own.ndim - 1)) * (own - loo)  # noqa: E731
    return Means(
        pull(configs.val, loo_val),
        pull(configs.test, loo_test),
        pull(configs.pr_auc, loo_pr),
        kept,
        n_runs,
    )


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
        noise_model: str = DEFAULT_NOISE_MODEL,
    ) -> None:
        if noise_model not in NOISE_MODELS:
            raise ValueError(f"noise model {noise_model!r}: one of {', '.join(NOISE_MODELS)}")
        self.bank = bank
        self.features = Features(bank, space)
        self.configs = distinct_configs(bank, self.features)
        self.residuals = noise_residuals(bank, self.configs) if noise else []
        self.noise_model = noise_model
        self.residual_config, self.residual_seed = residual_origins(bank, self.configs)
        self.quality, self.quality_sd = noise_by_quality(bank, self.configs)
        self.surrogate = surrogate or default_surrogate(self.configs.x)

    @property
    def surrogate(self) -> KnnSurrogate:
        return self._surrogate

    @surrogate.setter
    def surrogate(self, model: KnnSurrogate) -> None:
        self._surrogate = model
        self.means = shrunk_means(self.configs, model, self.residuals)

    def curve(self, config: dict[str, Any], rng: np.random.Generator) -> TrialCurve:
        rule = rule_index(config.get("threshold"), config.get("top_k"))
        knobs = {k: config[k] for k in self.bank.knob_names}
        runs = self.bank.runs_of(knobs)
        b = self.bank
        seed = self._bank_seed(config.get("seed"))
        if len(runs):
            if seed is not None and np.any(b.train_seed[runs] == seed):
                runs = runs[b.train_seed[runs] == seed]
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
        x = self.features(knobs)
        val, test, pr_auc, secs = self.predict(x)
        if self.residuals:
            # The neighbours' curves carry their own runs' noise; add only what is missing.
            scale = np.sqrt(1.0 - self.noise_carried(x))
            pool = np.arange(len(self.residuals))
            if seed is not None:
                pool = pool[self.residual_seed == seed]
            dv, dt, dp = self.residuals[int(pool[rng.integers(len(pool))])]
            if self.noise_model == "by-quality-and-seed":
                scale *= self.noise_scale(float(val.max()))
            val, test, pr_auc = val + scale * dv, test + scale * dt, pr_auc + scale * dp
        val, test = np.clip(val, 0, 1), np.clip(test, 0, 1)
        return _curve(val, test, tuned_rules(val), pr_auc, secs, rule, None)

    def _bank_seed(self, search_seed: int | None) -> int | None:
        """The bank training seed whose residuals a search with this seed draws (None: any;
        always None for the pooled model)."""
        if self.noise_model == "pooled" or search_seed is None or not self.residuals:
            return None
        seeds = np.unique(self.residual_seed)
        return int(seeds[int(search_seed) % len(seeds)])

    def noise_scale(self, quality: float) -> float:
        """One run's noise at this quality over the pooled noise: the repeated configurations
        nearest in quality against all of them (root mean squares of their spreads)."""
        near = np.argsort(np.abs(self.quality - quality))[:NEAREST_IN_QUALITY]
        return float(np.sqrt(np.mean(self.quality_sd[near] ** 2) / np.mean(self.quality_sd**2)))

    def noise_carried(self, x: np.ndarray, exclude: np.ndarray | None = None) -> float:
        """The share of one run's noise variance already in the surrogate's mean at x: the
        mean of n runs carries 1/n of it, a weighted sum of independent means sum(w^2 / n)."""
        idx, w = self.surrogate.neighbours(x, exclude)
        m = self.means
        return float(min(1.0, np.sum(w**2 * m.kept[idx] ** 2 / m.n_runs[idx])))

    def predict(self, x: np.ndarray, exclude: np.ndarray | None = None):
        idx, w = self.surrogate.neighbours(x, exclude)
        m = self.means
        return (
            np.tensordot(w, m.val[idx], axes=1),
            np.tensordot(w, m.test[idx], axes=1),
            w @ m.pr_auc[idx],
            w @ self.configs.secs[idx],
        )


def default_surrogate(x: np.ndarray) -> KnnSurrogate:
    # Chosen by benchmarks/simulate.py's k-fold check (see benchmarks/README.md).
    return KnnSurrogate(x=x, weights=np.ones(x.shape[1]), k=5, power=1.0)
