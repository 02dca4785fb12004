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
"""

from __future__ import annotations

from typing import Any

from ray.tune.schedulers import ASHAScheduler, TrialScheduler


def rung_to_record(scheduler: ASHAScheduler, trial_id: str, t: float):
    """(milestone, recorded) of the rung ASHA decides at for a result at time t (as
    `_Bracket.on_result` picks it), or None when the result passes no new rung."""
    bracket = scheduler._trial_info.get(trial_id)
    if bracket is None:
        return None
    for milestone, recorded in bracket._rungs:
        if t < milestone or trial_id in recorded:
            continue
        return milestone, recorded
    return None


class LateCutASHA(ASHAScheduler):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.unranked: dict[str, list[float]] = {}  # trial id -> rungs it reached alone

    def on_trial_result(self, tune_controller, trial, result: dict[str, Any]) -> str:
        tid = trial.trial_id
        t = result.get(self._time_attr)
        rung = rung_to_record(self, tid, t) if t is not None else None
        action = super().on_trial_result(tune_controller, trial, result)
        if action != TrialScheduler.CONTINUE:
            return action
        if rung is not None and list(rung[1]) == [tid]:
            self.unranked.setdefault(tid, []).append(rung[0])
        bracket = self._trial_info.get(tid)
        rungs = dict(bracket._rungs) if bracket is not None else {}
        for milestone in list(self.unranked.get(tid, ())):
            recorded = rungs[milestone]
            others = {k: v for k, v in recorded.items() if k != tid}
            if not others:
                continue
            self.unranked[tid].remove(milestone)
            if recorded[tid] < bracket.cutoff(others):
                self._num_stopped += 1
                return TrialScheduler.STOP
        return action

    def on_trial_complete(self, tune_controller, trial, result) -> None:
        self.unranked.pop(trial.trial_id, None)
        super().on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller, trial) -> None:
        self.unranked.pop(trial.trial_id, None)
        super().on_trial_remove(tune_controller, trial)
