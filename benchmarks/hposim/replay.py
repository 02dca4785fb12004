"""Replay one search against recorded learning curves, in simulated time.

The searcher, scheduler and stoppers are the objects `genretune search` builds
(`search.algorithms.build_algorithms`), or a baseline's (hposim/baselines.py); this module only
plays Ray Tune's controller: when one of the W workers is free it asks the scheduler which
pending or paused trial to run (`choose_trial_to_run`) and, when none, the searcher for a new
configuration (wrapped in Ray's ConcurrencyLimiter, as `--max-concurrent W` has Ray do, unless
the scheduler pauses trials: a paused trial holds no worker); it hands every epoch's result to
the stoppers first and then the scheduler (the searcher hears a result unless the trial is
stopped on it), pauses a trial on PAUSE, stops one the scheduler stops (`stop_trial`), and
tells the scheduler and the searcher when a trial ends, in the order Ray's TuneController
does. A trial's epochs take the seconds its curve recorded, so which trial reports next, and
what the searcher has seen when it proposes, follow simulated wall time.
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


@dataclass(eq=False)  # schedulers key their state by trial object: identity, not value
class SimTrial:
    """What Ray's schedulers and searchers read of a trial: its id, config and status."""

    trial_id: str
    config: dict[str, Any]
    curve: TrialCurve
    objective: str  # the training loop's patience objective: val_f1 or tuned_val_f1
    status: str = "PENDING"
    last_result: dict[str, Any] = field(default_factory=dict)
    end_reason: str = ""
    is_saving: bool = False  # (Ray's HyperBand asks; a simulated checkpoint takes no time)

    @property
    def epochs_done(self) -> int:
        return int(self.last_result.get("training_iteration", 0))

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


class _SearchAlg:
    """What a scheduler reaches of the controller's search algorithm (BOHB: on_pause)."""

    def __init__(self, searcher) -> None:
        self.searcher = searcher


class _Controller:
    """The part of Ray's TuneController its schedulers call back: the trials, and stopping
    one (HyperBand stops the paused trials a halving drops)."""

    def __init__(self, trials: list[SimTrial], searcher, stop) -> None:
        self._trials, self.search_alg, self.stop_trial = trials, _SearchAlg(searcher), stop

    def get_trials(self) -> list[SimTrial]:
        return self._trials


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
    replaces what `build_algorithms(settings)` builds (tests give a searcher a fixed order; a
    baseline its own searcher and scheduler)."""
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
    pausing = getattr(algorithms, "pauses_trials", False)
    pending_ahead = getattr(algorithms, "pending_ahead", 1)
    searcher = (
        algorithms.searcher
        if pausing
        else ConcurrencyLimiter(algorithms.searcher, max_concurrent=workers)
    )
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
    index_of: dict[str, int] = {}
    sequence = 0
    finished = False

    def end(index: int, reason: str) -> None:
        trial = log.trials[index]
        scheduler.on_trial_complete(controller, trial, trial.last_result)
        searcher.on_trial_complete(trial.trial_id, result=trial.last_result)
        trial.status, trial.end_reason = "TERMINATED", reason
        running.discard(index)

    def stop_trial(trial: SimTrial, reason: str = "halving") -> None:
        """TuneController.stop_trial: a paused or pending trial is removed from the scheduler
        and completed, without a result, at the searcher."""
        if trial.status in ("TERMINATED", "ERROR"):
            return
        index = index_of[trial.trial_id]
        log.decisions.append((trial.trial_id, trial.epochs_done, reason))
        if trial.status == "RUNNING":
            end(index, reason)
            return
        trial.status, trial.end_reason = "TERMINATED", reason
        scheduler.on_trial_remove(controller, trial)
        searcher.on_trial_complete(trial.trial_id)

    controller = _Controller(log.trials, searcher, stop_trial)

    def new_trial() -> bool:
        """Ask the searcher for a configuration; a new pending trial, or False."""
        nonlocal finished
        if len(log.trials) >= settings.num_samples or getattr(scheduler, "closed", False):
            finished = True
            return False
        trial_id = f"{len(log.trials):05d}"
        suggestion = searcher.suggest(trial_id)
        if suggestion == Searcher.FINISHED:
            finished = True
            return False
        if suggestion is None:
            return False
        config = {**fixed, **suggestion}
        trial = SimTrial(trial_id, config, source.curve(config, rng), objective)
        log.trials.append(trial)
        index_of[trial_id] = len(log.trials) - 1
        scheduler.on_trial_add(controller, trial)
        return True

    def launch(now: float) -> None:
        nonlocal sequence
        while len(running) < workers:
            trial = scheduler.choose_trial_to_run(controller)
            if trial is None:
                if not finished and new_trial():
                    continue
                break
            index = index_of[trial.trial_id]
            trial.status = "RUNNING"
            running.add(index)
            epoch = trial.epochs_done + 1
            heapq.heappush(
                events, (now + trial.curve.epoch_seconds[epoch - 1], sequence, index, epoch)
            )
            sequence += 1
        # Ray's controller keeps trials pending ahead (its max_pending_trials: 1 for a
        # searcher, 16 for random search by its BasicVariantGenerator): a scheduler that
        # pauses trials sees them added, as HyperBand's brackets fill with live trials.
        # (Behind the ConcurrencyLimiter the others run with, a searcher is not asked while
        # every worker is busy: nothing to emulate.)
        while pausing and not finished:
            if sum(t.status == "PENDING" for t in log.trials) >= pending_ahead or not new_trial():
                break

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
            decision = scheduler.on_trial_result(controller, trial, result)
            reason = "asha"
        if decision != TrialScheduler.STOP:
            searcher.on_trial_result(trial.trial_id, result)
        trial.last_result = result
        if trial.status == "TERMINATED":
            pass  # the scheduler stopped it while deciding (a halving): ended already
        elif decision == TrialScheduler.STOP or epoch >= epochs:
            if epoch >= epochs:
                reason = "max_epochs"
            log.decisions.append((trial.trial_id, epoch, reason))
            end(index, reason)
        elif decision == TrialScheduler.PAUSE:
            trial.status = "PAUSED"
            running.discard(index)
        else:
            next_at = now + trial.curve.epoch_seconds[epoch]
            heapq.heappush(events, (next_at, sequence, index, epoch + 1))
            sequence += 1
        if stopper.stop_all() or (max_results is not None and log.n_results >= max_results):
            waiting = [i for i, t in enumerate(log.trials) if t.status in ("PAUSED", "PENDING")]
            for other in sorted(running) + waiting:
                stop_trial(log.trials[other], "budget")
            break
        launch(now)
    return log
