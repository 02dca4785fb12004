"""What the study is told once a search has ended: the outcome of the trials Ray stopped
without telling the searcher (the search budget ran out), and the samples a killed driver
left open. The searcher (optuna_search.py) tells the study everything while the search runs.
"""

from __future__ import annotations

import sys
from typing import Any

import optuna
from optuna.trial import TrialState

from genretune.data.numbers import finite_number
from genretune.results.internals import optuna_trial_id
from genretune.search.optuna_search import RAY_TRIAL_ID


def _history(result) -> list[dict[str, Any]]:
    """A Ray Result's rows, one per epoch in order (a rerun epoch's last row)."""
    frame = result.metrics_dataframe
    if frame is None or frame.empty or "training_iteration" not in frame:
        return [result.metrics] if result.metrics else []
    frame = frame.drop_duplicates("training_iteration", keep="last")
    return frame.sort_values("training_iteration").to_dict("records")


def stopped_trial_outcome(s, rows: list[dict[str, Any]]) -> tuple[TrialState, Any]:
    """(state, value or values) the searcher would have told the study for a trial that ended
    with these results: what PruningOptunaSearch.on_trial_complete decides (and Optuna makes
    of it: a value that is not a finite number fails the trial). One difference: a trial drawn
    but never run is FAIL here (Ray tells it as PRUNED without a value)."""
    from genretune.search.algorithms import trial_was_cut

    if not rows:
        return TrialState.FAIL, None  # drawn but never run
    last = rows[-1]
    if s.objectives:
        first, mode = s.objectives[0]
        sign = 1.0 if mode == "max" else -1.0
        best = None
        for row in rows:  # the first epoch with the best first objective, as training keeps
            if finite_number(row.get(first)) is not None and (
                best is None or sign * row[first] > sign * best[first]
            ):
                best = row
        values = [finite_number((best or last).get(m)) for m, _ in s.objectives]
        if any(v is None for v in values):
            return TrialState.FAIL, None
        return TrialState.COMPLETE, values
    if last.get(s.metric) is None:
        return TrialState.PRUNED, None
    value = finite_number(last[s.metric])
    if value is None:
        return TrialState.FAIL, None
    cut = trial_was_cut(last, s.base.optim.epochs, s.base.optim.patience)
    if s.cut_trials_as == "pruned" and cut:
        return TrialState.PRUNED, value
    return TrialState.COMPLETE, value


def settle_stopped_trials(s, results, errored: set[str]) -> int:
    """Tell the study the outcome of every trial it still holds as running once a search has
    ended (not interrupted): Ray stops the trials that run when the search budget is spent
    without telling the searcher, which would leave them out of the study (and of a
    multi-objective search's Pareto front). Trials in `errored` are told FAIL. Returns how
    many trials were settled."""
    study = optuna.load_study(study_name=s.study, storage=s.optuna_url())
    by_id: dict[str, list] = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if RAY_TRIAL_ID in t.user_attrs:
            by_id.setdefault(t.user_attrs[RAY_TRIAL_ID], []).append(t)
    if not by_id:
        return 0
    rows_of = {}
    for r in results:
        if r.metrics and r.metrics.get("trial_id") in by_id:
            rows_of[r.metrics["trial_id"]] = _history(r)
    settled = 0
    for trial_id, open_trials in by_id.items():
        # One study trial per Ray trial: the newest carries its results, any older one failed.
        *older, frozen = sorted(open_trials, key=lambda t: t.number)
        for t in older:
            study.tell(t.number, state=TrialState.FAIL)
        settled += len(open_trials)
        if trial_id in errored:
            study.tell(frozen.number, state=TrialState.FAIL)
            continue
        state, value = stopped_trial_outcome(s, rows_of.get(trial_id, []))
        trial = optuna.trial.Trial(study, optuna_trial_id(frozen))
        if state == TrialState.PRUNED and value is not None:
            step = int(rows_of[trial_id][-1]["training_iteration"])
            if step not in frozen.intermediate_values:
                trial.report(value, step)
            value = None
        study.tell(trial, value, state=state)
    print(
        f"told Optuna the outcome of {settled} trial(s) the search stopped when it ended",
        file=sys.stderr,
    )
    return settled


def close_orphaned_optuna_trials(s, results) -> int:
    """Mark FAIL the Optuna trials left RUNNING by a killed driver.

    Optuna records a sample when it is drawn; Ray Tune records the trial in its experiment state
    a few seconds later. A driver killed in between leaves a study trial that no Ray trial will
    ever finish. Once every Ray trial has ended, such a trial can only be one of those.
    """
    if results.num_errors or results.num_terminated < s.num_samples:
        return 0
    study = optuna.load_study(study_name=s.study, storage=s.optuna_url())
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
