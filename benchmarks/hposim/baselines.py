"""The field's baselines for multi-fidelity search, built for the simulator from Ray's own
objects where Ray has them:

  one-epoch-top-k  every configuration trains one epoch, the best K train on (Egele et al.
                   2023, arXiv 2307.15422): half the budget screens, half trains the K best
  hyperband        Ray's HyperBandScheduler (synchronous successive halving, its brackets)
                   over random search
  bohb             Ray's TuneBOHB (hpbandster's BOHB model) with HyperBandForBOHB

Each keeps the flags' patience and budget stoppers; `baseline_algorithms` replaces the searcher
(bohb) and the scheduler. They pause trials (a paused trial holds no worker), which the replay
plays as Ray's controller does. Their packages (hpbandster, ConfigSpace) are in the `dev`
extra.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

KINDS = ("one-epoch-top-k", "hyperband", "bohb")
REDUCTION_FACTOR = 3  # Hyperband's and BOHB's eta (Ray's default for HyperBand is 3 too)


@dataclass
class BaselineAlgorithms:
    searcher: Any
    scheduler: Any
    stoppers: list
    pauses_trials: bool = True  # the replay limits running trials, not live ones
    # Trials Ray's controller creates ahead of free workers (max_pending_trials): 1 for a
    # searcher; 16 for random search, which Ray does with its BasicVariantGenerator.
    pending_ahead: int = 1


class ComputeBudgetStopper:
    """End the search once its trials have spent `seconds` of compute (the recorded epoch
    seconds of every reported result): a budget in compute-seconds, not in trial-epochs."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.spent = seconds, 0.0

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        self.spent += float(result.get("epoch_seconds", 0.0))
        return False

    def stop_all(self) -> bool:
        return self.spent >= self.seconds


def screening_plan(budget_epochs: float, epochs: int) -> tuple[int, int]:
    """(configurations screened for one epoch, K trained on): half the budget each."""
    screen = max(2, int(budget_epochs // 2))
    keep = max(1, int((budget_epochs - screen) // max(epochs - 1, 1)))
    return screen, min(keep, screen)


def one_epoch_top_k_scheduler(screen: int, keep: int):
    from ray.tune.schedulers import FIFOScheduler, TrialScheduler

    class OneEpochTopK(FIFOScheduler):
        """Pause every trial after its first epoch until `screen` have; then run the `keep`
        best on (by the search metric at epoch 1) and stop the others."""

        def __init__(self) -> None:
            super().__init__()
            self.first: dict[Any, float] = {}  # trial -> signed metric at epoch 1
            self.promoted: list[Any] = []
            self.closed = False  # screening is over: the replay asks for no new trial
            self.metric_name, self.sign = None, 1.0

        def set_search_properties(self, metric, mode, **spec) -> bool:
            self.metric_name, self.sign = metric, (1.0 if mode == "max" else -1.0)
            return super().set_search_properties(metric, mode, **spec)

        def on_trial_result(self, tune_controller, trial, result) -> str:
            if self.closed:  # a trial started as screening ended is not among the K
                promoted = trial in self.promoted
                return TrialScheduler.CONTINUE if promoted else TrialScheduler.STOP
            if result.get("training_iteration") != 1:
                return TrialScheduler.CONTINUE
            self.first[trial] = self.sign * float(result[self.metric_name])
            if len(self.first) < screen:
                return TrialScheduler.PAUSE
            self.closed = True
            ranked = sorted(self.first, key=self.first.get, reverse=True)
            self.promoted = ranked[:keep]
            for other in ranked[keep:]:
                if other is not trial:
                    tune_controller.stop_trial(other)
            return TrialScheduler.CONTINUE if trial in self.promoted else TrialScheduler.STOP

        def choose_trial_to_run(self, tune_controller):
            for trial in tune_controller.get_trials():
                if trial.status == "PENDING" and not self.closed:
                    return trial
            for trial in self.promoted:
                if trial.status == "PAUSED":
                    return trial
            return None

    return OneEpochTopK()


def _config_space(space: dict, seed: int):
    """A ConfigSpace of the searched Optuna distributions (categoricals by their position,
    so None is a choice like any other)."""
    import ConfigSpace as CS
    import optuna.distributions as od

    cs = CS.ConfigurationSpace(seed=seed)
    for name, dist in space.items():
        if isinstance(dist, od.CategoricalDistribution):
            cs.add(CS.CategoricalHyperparameter(name, list(range(len(dist.choices)))))
        elif isinstance(dist, od.IntDistribution):
            cs.add(CS.UniformIntegerHyperparameter(name, dist.low, dist.high, log=dist.log))
        else:
            cs.add(CS.UniformFloatHyperparameter(name, dist.low, dist.high, log=dist.log))
    return cs


def _decoded(space: dict, config: dict) -> dict:
    """A BOHB suggestion as genretune values: categoricals from their position, a stepped
    float (the threshold) on its grid."""
    import optuna.distributions as od

    out = {}
    for name, value in config.items():
        dist = space[name]
        if isinstance(dist, od.CategoricalDistribution):
            out[name] = dist.choices[int(value)]
        elif isinstance(dist, od.IntDistribution):
            out[name] = int(value)
        elif dist.step:
            steps = round((float(value) - dist.low) / dist.step)
            out[name] = round(dist.low + steps * dist.step, 10)
        else:
            out[name] = float(value)
    return out


def bohb_searcher(settings, workers: int, seed: int):
    from ray.tune.search.bohb import TuneBOHB

    space = settings.space

    class GenretuneBOHB(TuneBOHB):
        def suggest(self, trial_id: str):
            config = super().suggest(trial_id)
            return _decoded(space, config) if isinstance(config, dict) else config

    return GenretuneBOHB(
        space=_config_space(space, seed),
        metric=settings.metric,
        mode=settings.mode,
        max_concurrent=workers,
        seed=seed,
    )


def baseline_algorithms(
    kind: str,
    settings,
    workers: int,
    seed: int,
    budget_seconds: float | None = None,
    mean_epoch_seconds: float = 1.0,
) -> BaselineAlgorithms:
    """The searcher, scheduler and stoppers of baseline `kind` on `settings` (built from
    the strategy's flags: its sampler, patience and trial-epoch budget)."""
    from ray.tune.schedulers import HyperBandForBOHB, HyperBandScheduler

    from genretune.search.algorithms import build_algorithms

    built = build_algorithms(settings, storage=None)
    stoppers = list(built.stoppers)
    budget_epochs = settings.budget_epochs
    if budget_seconds is not None:
        stoppers = [s for s in stoppers if type(s).__name__ != "BudgetStopper"]
        stoppers.append(ComputeBudgetStopper(budget_seconds))
        budget_epochs = budget_seconds / mean_epoch_seconds
    epochs = settings.base.optim.epochs
    if kind == "one-epoch-top-k":
        screen, keep = screening_plan(budget_epochs, epochs)
        return BaselineAlgorithms(built.searcher, one_epoch_top_k_scheduler(screen, keep), stoppers)
    hyperband = dict(time_attr="training_iteration", max_t=epochs)
    if kind == "hyperband":
        scheduler = HyperBandScheduler(**hyperband, reduction_factor=REDUCTION_FACTOR)
        return BaselineAlgorithms(built.searcher, scheduler, stoppers, pending_ahead=16)
    if kind == "bohb":
        np.random.seed(seed)  # hpbandster's model draws from NumPy's global generator
        scheduler = HyperBandForBOHB(**hyperband, reduction_factor=REDUCTION_FACTOR)
        return BaselineAlgorithms(bohb_searcher(settings, workers, seed), scheduler, stoppers)
    raise ValueError(f"unknown baseline {kind!r} (known: {', '.join(KINDS)})")
