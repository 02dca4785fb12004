"""ASHA that ranks a trial again at a rung it reached before any other trial.

Ray's ASHA decides at a rung by comparing a trial with the trials that reached the rung before
it. The first trial to reach a rung has nothing to be compared with, so it always continues;
if it also reaches the next rung first (a fast configuration, or one started early), it can run
every epoch unranked. A poor configuration that trains fast and keeps creeping up (so patience
never stops it) then takes a whole trial's worth of the budget: on the search simulator, the
bank's worst configuration given as the baseline ran all 15 epochs in every seed.

LateCutASHA keeps Ray's decisions and adds one: a trial that reached a rung alone is compared
again, at each of its later results, with the trials that have reached that rung since, and is
stopped if its value there is below the rung's cutoff (the same quantile Ray uses). Each rung is
checked once, as soon as another trial has reached it.

When the metric is a running maximum (best_val_f1 and the other best_* keys), a trial still on
its way to the rung has already reached a value it can only improve on, so the trial that
reached the rung alone is also compared, at each of its results, with those lower bounds: if it
is below the cutoff of values the others are certain to reach, Ray's ASHA would cut it had it
arrived after them, and it is stopped now rather than after they arrive.
"""

from __future__ import annotations

from typing import Any

from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from genretune.model.metric_keys import RUNNING_MAXIMA
from genretune.results.internals import (
    asha_bracket,
    asha_sign,
    asha_time_attr,
    bracket_rungs,
    count_asha_stop,
)


def rung_to_record(scheduler: ASHAScheduler, trial_id: str, t: float):
    """(milestone, recorded) of the rung ASHA decides at for a result at time t (as
    `_Bracket.on_result` picks it), or None when the result passes no new rung."""
    bracket = asha_bracket(scheduler, trial_id)
    if bracket is None:
        return None
    for milestone, recorded in bracket_rungs(bracket):
        if t < milestone or trial_id in recorded:
            continue
        return milestone, recorded
    return None


class LateCutASHA(ASHAScheduler):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.unranked: dict[str, list[float]] = {}  # trial id -> rungs it reached alone
        # running trial id -> (time, signed value) of its latest result
        self.latest: dict[str, tuple[float, float]] = {}

    def lower_bounds(self, tid: str, milestone: float, recorded: dict) -> dict[str, float]:
        """What the running trials of `tid`'s bracket that have not reached `milestone` yet
        are certain to have there (their latest value of a running maximum), else nothing."""
        if self.metric not in RUNNING_MAXIMA or asha_sign(self) != 1.0:
            return {}
        bracket = asha_bracket(self, tid)
        return {
            other: value
            for other, (t, value) in self.latest.items()
            if other != tid
            and other not in recorded
            and t < milestone
            and asha_bracket(self, other) is bracket
        }

    def on_trial_result(self, tune_controller, trial, result: dict[str, Any]) -> str:
        tid = trial.trial_id
        t = result.get(asha_time_attr(self))
        value = result.get(self.metric)
        if t is not None and value is not None:
            self.latest[tid] = (t, asha_sign(self) * value)
        rung = rung_to_record(self, tid, t) if t is not None else None
        action = super().on_trial_result(tune_controller, trial, result)
        if action != TrialScheduler.CONTINUE:
            self.latest.pop(tid, None)
            return action
        if rung is not None and list(rung[1]) == [tid]:
            self.unranked.setdefault(tid, []).append(rung[0])
        bracket = asha_bracket(self, tid)
        rungs = dict(bracket_rungs(bracket)) if bracket is not None else {}
        for milestone in list(self.unranked.get(tid, ())):
            recorded = rungs[milestone]
            reached = {k: v for k, v in recorded.items() if k != tid}
            others = {**self.lower_bounds(tid, milestone, recorded), **reached}
            if not others:
                continue
            if reached:  # ranked against real values once; lower bounds at every result
                self.unranked[tid].remove(milestone)
            if recorded[tid] < bracket.cutoff(others):
                count_asha_stop(self)
                self.latest.pop(tid, None)
                return TrialScheduler.STOP
        return action

    def _forget(self, trial) -> None:
        self.unranked.pop(trial.trial_id, None)
        self.latest.pop(trial.trial_id, None)

    def on_trial_complete(self, tune_controller, trial, result) -> None:
        self._forget(trial)
        super().on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller, trial) -> None:
        self._forget(trial)
        super().on_trial_remove(tune_controller, trial)

    def on_trial_error(self, tune_controller, trial) -> None:
        self._forget(trial)
        super().on_trial_error(tune_controller, trial)
