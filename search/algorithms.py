"""The searcher, scheduler and stoppers a search runs with, built in one place.

`genretune search` hands these objects to Ray Tune's Tuner; the search simulator
(benchmarks/simulate.py) drives the very same objects against recorded learning curves, so a
default chosen on the simulator is the default the real search runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import optuna

if TYPE_CHECKING:
    from genretune.search.settings import SearchSettings


@dataclass
class SearchAlgorithms:
    searcher: Any  # a ray.tune.search.Searcher (OptunaSearch)
    scheduler: Any | None  # a ray.tune.schedulers.TrialScheduler, None = first in, first out
    stoppers: list  # ray.tune.Stopper objects, combined by the caller


AUTO = "auto"
# `--tpe-startup auto`: this share of the trials a search expects to run are random start-up
# trials, within [TPE_AUTO_MIN, TPE_AUTO_MAX].
TPE_AUTO_SHARE, TPE_AUTO_MIN, TPE_AUTO_MAX = 0.25, 3, 10


def expected_epochs_per_trial(s: SearchSettings) -> float:
    """Epochs a trial runs on average: all of them without ASHA; with ASHA, the grace period
    plus, rung by rung, the share (1/reduction factor per rung) that goes on to the next."""
    epochs = s.base.optim.epochs
    if s.scheduler != "asha":
        return float(epochs)
    total, rung, survivors = 0.0, 0, 1.0
    milestone = s.grace_period
    while rung < epochs:
        nxt = min(milestone, epochs)
        total += survivors * (nxt - rung)
        rung, survivors, milestone = (
            nxt,
            survivors / s.reduction_factor,
            milestone * s.reduction_factor,
        )
    return total


def expected_trials(s: SearchSettings) -> float:
    if not s.budget_epochs:
        return float(s.num_samples)
    return min(float(s.num_samples), s.budget_epochs / expected_epochs_per_trial(s))


def auto_tpe_startup(s: SearchSettings) -> int:
    share = round(TPE_AUTO_SHARE * expected_trials(s))
    return int(min(max(share, TPE_AUTO_MIN), TPE_AUTO_MAX))


def fixed_config(s: SearchSettings) -> dict[str, Any]:
    """Every config value that is not searched (Ray merges each suggestion into these)."""
    return {k: v for k, v in s.base.to_flat().items() if k not in s.space}


def build_sampler(s: SearchSettings) -> optuna.samplers.BaseSampler:
    if s.sampler == "random":
        return optuna.samplers.RandomSampler(seed=s.seed)
    if s.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=s.seed)
    if s.sampler == "gp":
        # Gaussian-process Bayesian optimisation; its start-up draws are TPE's count.
        return optuna.samplers.GPSampler(seed=s.seed, n_startup_trials=s.tpe_startup_trials)
    return optuna.samplers.TPESampler(
        seed=s.seed,
        n_startup_trials=s.tpe_startup_trials,
        multivariate=s.tpe_multivariate,
        constant_liar=s.tpe_constant_liar,
    )


def trial_was_cut(result: dict[str, Any], epochs: int, patience: int) -> bool:
    """Whether a trial's last result ended it before its own end (patience or the last
    epoch): ASHA or the search budget stopped it."""
    if not result or "training_iteration" not in result:
        return False
    return result["training_iteration"] < epochs and result.get("epochs_since_best", 0) < patience


def build_searcher(s: SearchSettings, storage: optuna.storages.BaseStorage | None):
    """Ray Tune's OptunaSearch over the settings' space; `storage` None = in memory."""
    from genretune.search.optuna_search import PruningOptunaSearch

    multi = bool(s.objectives)
    return PruningOptunaSearch(
        space=s.space,
        metric=[m for m, _ in s.objectives] if multi else s.metric,
        mode=[mode for _, mode in s.objectives] if multi else s.mode,
        points_to_evaluate=s.initial_points or None,
        sampler=build_sampler(s),
        study_name=s.study,
        storage=storage,
        cut_as_pruned=s.cut_trials_as == "pruned",
        epochs=s.base.optim.epochs,
        patience=s.base.optim.patience,
    )


def build_scheduler(s: SearchSettings):
    """ASHA on epochs, or None (first in, first out: trials run until a stopper says so)."""
    if s.scheduler != "asha":
        return None
    from ray.tune.schedulers import ASHAScheduler

    from genretune.search.pareto_asha import ParetoASHA

    options = {
        "time_attr": "training_iteration",
        "max_t": s.base.optim.epochs,
        "grace_period": s.grace_period,
        "reduction_factor": s.reduction_factor,
    }
    if s.objectives:
        return ParetoASHA(objectives=s.objectives, **options)
    if s.late_cut:
        from genretune.search.late_cut_asha import LateCutASHA

        return LateCutASHA(**options)
    return ASHAScheduler(**options)


def build_stoppers(s: SearchSettings) -> list:
    from genretune.search.monitoring import BudgetStopper, PatienceStopper

    stoppers = [PatienceStopper(s.base.optim.patience)]
    if s.budget_epochs:
        from genretune.search import experiment_writer

        local = not experiment_writer.is_uri(s.storage_path)
        stoppers.append(BudgetStopper(s.budget_epochs, read_logged=local))
    return stoppers


def build_algorithms(
    s: SearchSettings, storage: optuna.storages.BaseStorage | None
) -> SearchAlgorithms:
    searcher = build_searcher(s, storage)
    if s.ramp_up:
        from genretune.search.ramp_up import RampUpLimiter

        searcher = RampUpLimiter(searcher, s.ramp_up, s.resources.max_concurrent)
    return SearchAlgorithms(searcher, build_scheduler(s), build_stoppers(s))
