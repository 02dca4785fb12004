"""What a search is: its settings (saved in the experiment dir, read back by --resume, results
and export), and the names of its options."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna.distributions as od

from genretune.model.config import TrainConfig, config_from_flat
from genretune.search import experiment
from genretune.search.space import Space

DECISION_SPACE, DECISION_TUNED = "space", "tuned"
SAMPLERS = ("tpe", "random", "nsga2", "gp")
SCHEDULERS = ("asha", "fifo")
# Keys Ray Tune adds to every reported result.
RAY_METRICS = ("training_iteration", "time_total_s", "time_this_iter_s")
# How Optuna hears of a trial cut before its end (by ASHA or the budget).
CUT_AS_COMPLETE, CUT_AS_PRUNED = "complete", "pruned"
CUT_TRIALS_AS = (CUT_AS_COMPLETE, CUT_AS_PRUNED)


# TPE's random start-up trials (the baseline counts as one): 3 won on the search simulator at
# 90-300 trial-epochs (Optuna's own default is 10, most of such a search).
TPE_STARTUP_TRIALS = 3
# Draws around the baseline: standard deviation as a share of each parameter's range.
BASELINE_SPREAD = 0.15


@dataclass(frozen=True)
class Resources:
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_concurrent: int | None = None


@dataclass(frozen=True)
class SearchSettings:
    name: str
    storage_path: str
    profile: str
    base: TrainConfig  # every non-searched value, including the data source
    space: Space
    baseline: dict[str, Any]  # the first trial ({} = none)
    metric: str
    mode: str
    num_samples: int
    grace_period: int
    reduction_factor: int
    seed: int
    decision: str = DECISION_SPACE
    resources: Resources = field(default_factory=Resources)
    max_failures: int = 2
    address: str | None = None
    data_on_workers: bool = False
    optuna_storage: str | None = None
    progress_interval: float = 30.0
    mlflow_uri: str | None = None
    sampler: str = "tpe"
    scheduler: str = "asha"
    budget_epochs: int | None = None
    tpe_startup_trials: int = TPE_STARTUP_TRIALS
    # Optuna 5's TPESampler defaults to multivariate TPE with a constant liar; on the search
    # simulator the independent TPE without it found better configurations (benchmarks/).
    tpe_multivariate: bool = False
    tpe_constant_liar: bool = False
    baseline_draws: tuple[dict[str, Any], ...] = ()  # trials drawn around the baseline, next
    cut_trials_as: str = CUT_AS_COMPLETE
    late_cut: bool = False  # ASHA ranks a trial again at a rung it reached alone
    ramp_up: int = 0  # trials running at first, one more per ended trial (0 = all at once)
    # Several objectives (metric, mode), the first one first: a multi-objective search.
    objectives: tuple[tuple[str, str], ...] = ()

    @property
    def initial_points(self) -> list[dict[str, Any]]:
        """What the searcher evaluates first, in order: the baseline and the draws around it."""
        return [self.baseline, *self.baseline_draws] if self.baseline else []

    @property
    def experiment_path(self) -> str:
        return f"{self.storage_path.rstrip('/')}/{self.name}"

    def optuna_url(self) -> str:
        if self.optuna_storage:
            return self.optuna_storage
        return f"sqlite:///{Path(self.experiment_path) / experiment.OPTUNA_DB}"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "storage_path": self.storage_path,
            "profile": self.profile,
            "base_config": self.base.to_flat(),
            "space": {k: od.distribution_to_json(v) for k, v in self.space.items()},
            "baseline": self.baseline,
            "baseline_draws": list(self.baseline_draws),
            "cut_trials_as": self.cut_trials_as,
            "late_cut": self.late_cut,
            "ramp_up": self.ramp_up,
            "objectives": [list(o) for o in self.objectives],
            "metric": self.metric,
            "mode": self.mode,
            "num_samples": self.num_samples,
            "grace_period": self.grace_period,
            "reduction_factor": self.reduction_factor,
            "seed": self.seed,
            "decision": self.decision,
            "resources": vars(self.resources),
            "max_failures": self.max_failures,
            "data_on_workers": self.data_on_workers,
            "optuna_storage": self.optuna_url(),
            "study_name": self.name,
            "sampler": self.sampler,
            "scheduler": self.scheduler,
            "budget_epochs": self.budget_epochs,
            "tpe_startup_trials": self.tpe_startup_trials,
            "tpe_multivariate": self.tpe_multivariate,
            "tpe_constant_liar": self.tpe_constant_liar,
        }


def settings_from_json(payload: dict[str, Any], **overrides: Any) -> SearchSettings:
    return SearchSettings(
        name=payload["name"],
        storage_path=payload["storage_path"],
        profile=payload["profile"],
        base=config_from_flat(payload["base_config"]),
        space={k: od.json_to_distribution(v) for k, v in payload["space"].items()},
        # Experiments written before the baseline was named so call it the seed point.
        baseline=payload.get("baseline", payload.get("seed_point", {})),
        baseline_draws=tuple(payload.get("baseline_draws", ())),
        cut_trials_as=payload.get("cut_trials_as", CUT_AS_COMPLETE),
        late_cut=payload.get("late_cut", False),
        ramp_up=payload.get("ramp_up", 0),
        objectives=tuple(tuple(o) for o in payload.get("objectives", ())),
        metric=payload["metric"],
        mode=payload["mode"],
        num_samples=payload["num_samples"],
        grace_period=payload["grace_period"],
        reduction_factor=payload["reduction_factor"],
        seed=payload["seed"],
        decision=payload["decision"],
        resources=Resources(**payload["resources"]),
        max_failures=payload["max_failures"],
        data_on_workers=payload["data_on_workers"],
        optuna_storage=payload["optuna_storage"],
        sampler=payload.get("sampler", "tpe"),
        scheduler=payload.get("scheduler", "asha"),
        budget_epochs=payload.get("budget_epochs"),
        tpe_startup_trials=payload.get("tpe_startup_trials", TPE_STARTUP_TRIALS),
        # Experiments written before these were settings ran with Optuna's defaults.
        tpe_multivariate=payload.get("tpe_multivariate", True),
        tpe_constant_liar=payload.get("tpe_constant_liar", True),
        **overrides,
    )
