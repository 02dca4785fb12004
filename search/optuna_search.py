"""The Optuna side of a search: Ray Tune's OptunaSearch with a choice of how Optuna hears of a
trial cut before its end, and the clean-up of samples a killed driver left open.

Ray's OptunaSearch tells Optuna every stopped trial as COMPLETE with the value of its last
result, so a trial ASHA cut at epoch 5 ranks beside one that trained all its epochs. With
`cut_as_pruned`, a trial cut by ASHA or the search budget is told as PRUNED instead, its
per-epoch values (including the one it was cut on) kept as intermediate values: Optuna's TPE
then ranks every finished trial above every pruned one, pruned ones by how far they got and
then by their last value. Trials that ended on their own (patience, last epoch) stay COMPLETE.

A resumed search reruns the epochs after a trial's last checkpoint; an epoch the study already
holds is not told again (Optuna would keep the first value and warn; the rerun's is the same).
"""

from __future__ import annotations

import sys
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch


class PruningOptunaSearch(OptunaSearch):
    def __init__(self, *args, cut_as_pruned: bool, epochs: int, patience: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.cut_as_pruned = cut_as_pruned
        self.epochs = epochs
        self.patience = patience
        # Several objectives: each trial's result at its best epoch by the first objective (the
        # epoch `genretune train` keeps), whose values go to Optuna when the trial ends.
        self.best_results: dict[str, dict[str, Any]] = {}
        self.last_step: dict[str, int] = {}  # the last epoch told to Optuna, per trial

    def _remember_best(self, trial_id: str, result: dict[str, Any] | None) -> None:
        first = self.metric[0]
        if not result or result.get(first) is None:
            return
        sign = 1.0 if self.mode[0] == "max" else -1.0
        best = self.best_results.get(trial_id)
        if best is None or sign * result[first] > sign * best[first]:
            self.best_results[trial_id] = {m: result.get(m) for m in self.metric}

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        if isinstance(self.metric, list):
            self._remember_best(trial_id, result)
        else:
            self.last_step[trial_id] = result.get("training_iteration")
            if self._study_holds_epoch(trial_id, result.get("training_iteration")):
                return
        super().on_trial_result(trial_id, result)

    def _study_holds_epoch(self, trial_id: str, step: int | None) -> bool:
        """Whether the study has this epoch of the trial already (read from its storage: the
        trial object a resumed search unpickled may lag behind it)."""
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is None or step is None or trial_id in self._completed_trials:
            return False
        return step in ot_trial.storage.get_trial(ot_trial._trial_id).intermediate_values

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        from genretune.search.algorithms import trial_was_cut

        if trial_id in self._ot_trials:
            # Ties the study's trial to Ray's (genretune results reads the front this way).
            self._ot_trials[trial_id].set_user_attr("ray_trial_id", trial_id)
        if isinstance(self.metric, list) and not error:
            # Ray does not pass the result a trial is stopped on to on_trial_result.
            self._remember_best(trial_id, result)
            best = self.best_results.pop(trial_id, None)
            if best is not None and all(v is not None for v in best.values()):
                result = {**(result or {}), **best}
        cut = (
            self.cut_as_pruned
            and not error
            and trial_id not in self._completed_trials
            and trial_id in self._ot_trials
            and trial_was_cut(result or {}, self.epochs, self.patience)
            and isinstance(self.metric, str)
            and result.get(self.metric) is not None
        )
        if not cut:
            super().on_trial_complete(trial_id, result=result, error=error)
            return
        ot_trial = self._ot_trials[trial_id]
        # Ray does not pass the result a trial is stopped on to on_trial_result (a trial the
        # budget ends had its last result reported already).
        step = result["training_iteration"]
        if self.last_step.pop(trial_id, None) != step and not self._study_holds_epoch(
            trial_id, step
        ):
            ot_trial.report(result[self.metric], step)
        self._ot_study.tell(ot_trial, state=TrialState.PRUNED)
        self._completed_trials.add(trial_id)


def close_orphaned_optuna_trials(s, results) -> int:
    """Mark FAIL the Optuna trials left RUNNING by a killed driver.

    Optuna records a sample when it is drawn; Ray Tune records the trial in its experiment state
    a few seconds later. A driver killed in between leaves a study trial that no Ray trial will
    ever finish. Once every Ray trial has ended, such a trial can only be one of those.
    """
    if results.num_errors or results.num_terminated < s.num_samples:
        return 0
    study = optuna.load_study(study_name=s.name, storage=s.optuna_url())
    orphans = [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]
    for t in orphans:
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)
    if orphans:
        print(
            f"marked {len(orphans)} Optuna trial(s) FAIL: sampled just before the driver was "
            "killed, never run",
            file=sys.stderr,
        )
    return len(orphans)
