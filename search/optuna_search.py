"""The Optuna side of a search: Ray Tune's OptunaSearch with a choice of how Optuna hears of a
trial cut before its end, and the clean-up of samples a killed driver left open.

Ray's OptunaSearch tells Optuna every stopped trial as COMPLETE with the value of its last
result, so a trial ASHA cut at epoch 5 ranks beside one that trained all its epochs. With
`cut_as_pruned`, a trial cut by ASHA or the search budget is told as PRUNED instead, its
per-epoch values (including the one it was cut on) kept as intermediate values: Optuna's TPE
then ranks every finished trial above every pruned one, pruned ones by how far they got and
then by their last value. Trials that ended on their own (patience, last epoch) stay COMPLETE.
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

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        from genretune.search.algorithms import trial_was_cut

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
        # Ray does not pass the result a trial is stopped on to on_trial_result.
        ot_trial.report(result[self.metric], result["training_iteration"])
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
