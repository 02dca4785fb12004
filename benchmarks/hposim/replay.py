"""Replay one search against recorded learning curves, in simulated time.

The searcher, scheduler and stoppers are the objects `genretune search` builds
(`search.algorithms.build_algorithms`); this module only plays Ray Tune's controller: it asks
the searcher for a configuration when one of the W workers is free (wrapped in Ray's
ConcurrencyLimiter, as `--max-concurrent W` has Ray do), hands every epoch's result to the
stoppers first and then the scheduler (the searcher hears a result unless the trial is stopped
on it), and tells the scheduler and the searcher when a trial ends, in the order Ray's
TuneController does. A trial's epochs take the seconds its curve recorded, so which trial
reports next, and what the searcher has seen when it proposes, follow simulated wall time.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hposim.curves import CurveSource, TrialCurve

# The keys a replayed result carries; a --metric outside them cannot be simulated.
SIMULATED_METRICS = (
    "val_f1",
    "best_val_f1",
    "tuned_val_f1",
    "best_tuned_val_f1",
    "val_pr_auc_macro",
)


@dataclass
class SimTrial:
    """What Ray's schedulers and searchers read of a trial: its id (and config)."""

    trial_id: str
    config: dict[str, Any]
    curve: TrialCurve
    objective: str  # the training loop's patience objective: val_f1 or tuned_val_f1
    status: str = "RUNNING"
    last_result: dict[str, Any] = field(default_factory=dict)
    end_reason: str = ""

    def __post_init__(self) -> None:
        own = self.curve.own_val
        tuned = self.curve.tuned_val
        self._series = {"val_f1": own, "tuned_val_f1": tuned}
        self._best = {k: np.maximum.accumulate(v) for k, v in self._series.items()}
        # epochs_since_best exactly as the training loop counts it (strict improvement).
        score = self._series[self.objective]
        since, best, counts = 0, -np.inf, []
        for value in score:
            if value > best:
                best, since = value, 0
            else:
                since += 1
            counts.append(since)
        self._since = counts

    def result(self, epoch: int, elapsed: float) -> dict[str, Any]:
        e = epoch - 1
        return {
            "training_iteration": epoch,
            "epoch": epoch,
            "val_f1": float(self._series["val_f1"][e]),
            "best_val_f1": float(self._best["val_f1"][e]),
            "tuned_val_f1": float(self._series["tuned_val_f1"][e]),
            "best_tuned_val_f1": float(self._best["tuned_val_f1"][e]),
            "val_pr_auc_macro": float(self.curve.val_pr_auc[e]),
            "epochs_since_best": self._since[e],
            "epoch_seconds": float(self.curve.epoch_seconds[e]),
            "time_total_s": elapsed,
            "trial_id": self.trial_id,
        }


@dataclass
class ReplayLog:
    """One replayed search: every reported result in order, and each trial's outcome."""

    times: list[float] = field(default_factory=list)  # simulated seconds of each result
    trial_of: list[int] = field(default_factory=list)  # trial index of each result
    epoch_of: list[int] = field(default_factory=list)
    objective: list[float] = field(default_factory=list)  # the search metric in each result
    trials: list[SimTrial] = field(default_factory=list)
    decisions: list[tuple[str, int, str]] = field(default_factory=list)  # (trial, epoch, action)

    @property
    def n_results(self) -> int:
        return len(self.objective)


def replay(
    settings,
    source: CurveSource,
    workers: int,
    rng: np.random.Generator,
    max_results: int | None = None,
    algorithms=None,
) -> ReplayLog:
    """Run the search of `settings` on curves from `source` with `workers` concurrent trials,
    until its budget stopper (or its sample count, or `max_results`) ends it. `algorithms`
    replaces what `build_algorithms(settings)` builds (tests give a searcher a fixed order)."""
    from ray.tune.schedulers import FIFOScheduler, TrialScheduler
    from ray.tune.search import ConcurrencyLimiter, Searcher
    from ray.tune.stopper import CombinedStopper

    from genretune.search.algorithms import build_algorithms, fixed_config

    if settings.metric not in SIMULATED_METRICS:
        raise ValueError(
            f"--metric {settings.metric}: the simulator replays {', '.join(SIMULATED_METRICS)}"
        )
    # ASHA draws each trial's bracket from NumPy's global generator.
    np.random.seed(int(rng.integers(2**31)))
    algorithms = algorithms or build_algorithms(settings, storage=None)
    searcher = ConcurrencyLimiter(algorithms.searcher, max_concurrent=workers)
    scheduler = algorithms.scheduler or FIFOScheduler()
    scheduler.set_search_properties(settings.metric, settings.mode)
    stoppers = algorithms.stoppers
    stopper = CombinedStopper(*stoppers) if len(stoppers) > 1 else stoppers[0]
    fixed = fixed_config(settings)
    epochs = settings.base.optim.epochs
    objective = settings.base.objective
    log = ReplayLog()
    events: list[tuple[float, int, int, int]] = []  # (time, sequence, trial index, epoch)
    running: set[int] = set()
    sequence = 0
    finished = False

    def end(index: int, reason: str) -> None:
        trial = log.trials[index]
        scheduler.on_trial_complete(None, trial, trial.last_result)
        searcher.on_trial_complete(trial.trial_id, result=trial.last_result)
        trial.status, trial.end_reason = "TERMINATED", reason
        running.discard(index)

    def launch(now: float) -> None:
        nonlocal sequence, finished
        while not finished and len(running) < workers:
            if len(log.trials) >= settings.num_samples:
                finished = True
                return
            trial_id = f"{len(log.trials):05d}"
            suggestion = searcher.suggest(trial_id)
            if suggestion == Searcher.FINISHED:
                finished = True
                return
            if suggestion is None:
                return
            config = {**fixed, **suggestion}
            trial = SimTrial(trial_id, config, source.curve(config, rng), objective)
            log.trials.append(trial)
            index = len(log.trials) - 1
            scheduler.on_trial_add(None, trial)
            running.add(index)
            heapq.heappush(events, (now + trial.curve.epoch_seconds[0], sequence, index, 1))
            sequence += 1

    launch(0.0)
    while events:
        now, _, index, epoch = heapq.heappop(events)
        trial = log.trials[index]
        result = trial.result(epoch, now)
        log.times.append(now)
        log.trial_of.append(index)
        log.epoch_of.append(epoch)
        log.objective.append(result[settings.metric])
        if stopper(trial.trial_id, result):
            decision, reason = TrialScheduler.STOP, "patience"
        else:
            decision = scheduler.on_trial_result(None, trial, result)
            reason = "asha"
        if decision != TrialScheduler.STOP:
            searcher.on_trial_result(trial.trial_id, result)
        trial.last_result = result
        if decision == TrialScheduler.STOP or epoch >= epochs:
            if epoch >= epochs:
                reason = "max_epochs"
            log.decisions.append((trial.trial_id, epoch, reason))
            end(index, reason)
        else:
            next_at = now + trial.curve.epoch_seconds[epoch]
            heapq.heappush(events, (next_at, sequence, index, epoch + 1))
            sequence += 1
        if stopper.stop_all() or (max_results is not None and log.n_results >= max_results):
            for other in sorted(running):
                cut = log.trials[other]
                log.decisions.append((cut.trial_id, cut.last_result.get("epoch", 0), "budget"))
                end(other, "budget")
            break
        launch(now)
    return log
