"""MLflow tracking for a search: one parent run per search, each trial a run nested under it.

The parent run holds the search's settings (as parameters) and, when the search ends, its best
result; each trial's run holds its searched parameters, every epoch's metrics (step = epoch) and
why it ended. A resumed search finds its parent and its trials' runs again by their tags and
continues them, so an interrupted search stays one tree in the MLflow UI. Runs on the driver,
through MlflowClient (no global MLflow state).
"""

from __future__ import annotations

import json
import time
from typing import Any

from ray import tune

from genretune.data.numbers import finite_number
from genretune.search.monitoring import END_ERROR, end_reason

STUDY_TAG = "genretune.study"  # the search's study name: the same across copies and resumes
ROLE_TAG = "genretune.role"  # "search" (the parent) or "trial"
TRIAL_TAG = "ray_trial_id"
PARENT_TAG = "mlflow.parentRunId"  # MLflow's own tag for nesting
# Ray's bookkeeping, not metrics.
_NOT_LOGGED = {"training_iteration", "done", "timestamp", "pid", "trial_id", "date"}


def _flat_params(settings: dict[str, Any]) -> dict[str, str]:
    """Settings as MLflow parameters: scalars as they are, structures as compact JSON."""
    out = {}
    for key, value in settings.items():
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        out[key] = text[:6000]  # MLflow's limit on a parameter's value
    return out


def _numbers(result: dict[str, Any]) -> dict[str, float]:
    out = {}
    for key, value in result.items():
        if key in _NOT_LOGGED or key.startswith("config"):
            continue
        number = finite_number(value)
        if number is not None:
            out[key] = number
    return out


class NestedMlflowRuns(tune.Callback):
    def __init__(
        self,
        tracking_uri: str,
        experiment_name: str,
        study: str,
        settings: dict[str, Any],
        searched: tuple[str, ...],
        metric: str,
        mode: str,
        epochs: int,
        patience: int,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name
        self.study = study
        self.settings = settings
        self.searched = searched
        self.metric, self.mode = metric, mode
        self.epochs, self.patience = epochs, patience
        self._client = None
        self.parent_id: str | None = None
        self.trial_runs: dict[str, str] = {}
        self.ended: set[str] = set()

    def __getstate__(self) -> dict[str, Any]:
        # Saved with the experiment without what belongs to one run of the driver: a resumed
        # search finds its runs again by their tags.
        return {
            **self.__dict__,
            "_client": None,
            "parent_id": None,
            "trial_runs": {},
            "ended": set(),
        }

    # -- MLflow -------------------------------------------------------------------------------

    @property
    def client(self):
        if self._client is None:
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    def _experiment_id(self) -> str:
        found = self.client.get_experiment_by_name(self.experiment_name)
        if found is not None:
            return found.experiment_id
        return self.client.create_experiment(self.experiment_name)

    def _find(self, experiment_id: str, query: str) -> str | None:
        runs = self.client.search_runs([experiment_id], filter_string=query, max_results=1)
        return runs[0].info.run_id if runs else None

    def setup(self, **info) -> None:
        """The parent run: found again on --resume (by the study's tag), else created."""
        experiment_id = self._experiment_id()
        self._experiment = experiment_id
        self.parent_id = self._find(
            experiment_id, f"tags.`{STUDY_TAG}` = '{self.study}' and tags.`{ROLE_TAG}` = 'search'"
        )
        if self.parent_id is None:
            run = self.client.create_run(
                experiment_id,
                run_name=self.experiment_name,
                tags={STUDY_TAG: self.study, ROLE_TAG: "search"},
            )
            self.parent_id = run.info.run_id
            for key, value in _flat_params(self.settings).items():
                self.client.log_param(self.parent_id, key, value)
        else:
            self.client.update_run(self.parent_id, status="RUNNING")

    def _trial_run(self, trial) -> str:
        run_id = self.trial_runs.get(trial.trial_id)
        if run_id is not None:
            return run_id
        query = (
            f"tags.`{TRIAL_TAG}` = '{trial.trial_id}' and tags.`{PARENT_TAG}` = '{self.parent_id}'"
        )
        run_id = self._find(self._experiment, query)
        if run_id is None:
            run = self.client.create_run(
                self._experiment,
                run_name=f"trial_{trial.trial_id}",
                tags={
                    PARENT_TAG: self.parent_id,
                    TRIAL_TAG: trial.trial_id,
                    STUDY_TAG: self.study,
                    ROLE_TAG: "trial",
                },
            )
            run_id = run.info.run_id
            for key in self.searched:
                if key in trial.config:
                    self.client.log_param(run_id, key, trial.config[key])
        else:
            self.client.update_run(run_id, status="RUNNING")
        self.trial_runs[trial.trial_id] = run_id
        return run_id

    # -- Ray Tune's callbacks -----------------------------------------------------------------

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self._trial_run(trial)

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        from mlflow.entities import Metric

        run_id = self._trial_run(trial)
        step = int(result.get("training_iteration", 0))
        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, step) for k, v in _numbers(result).items()]
        if metrics:
            self.client.log_batch(run_id, metrics=metrics)

    def _end(self, trial, reason: str, status: str) -> None:
        run_id = self._trial_run(trial)
        self.client.set_tag(run_id, "end_reason", reason)
        self.client.set_terminated(run_id, status=status)
        self.ended.add(trial.trial_id)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._end(trial, end_reason(trial.last_result, self.epochs, self.patience), "FINISHED")

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._end(trial, END_ERROR, "FAILED")


def close_search_runs(s, results, interrupted: bool, end_reasons: dict[str, dict]) -> None:
    """Settle the search's runs once Ray's fit() returned: Ray does not tell its callbacks
    whether a run was interrupted (it marks the running trials TERMINATED either way).
    Interrupted: the parent and the trials still running are KILLED, for --resume to continue.
    Finished: the trials the search's end stopped get their end reason, and the parent its best
    value and trial."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=s.mlflow_uri)
    experiment = client.get_experiment_by_name(s.study)
    if experiment is None:
        return
    ids = [experiment.experiment_id]
    parents = client.search_runs(
        ids, f"tags.`{STUDY_TAG}` = '{s.study}' and tags.`{ROLE_TAG}` = 'search'", max_results=1
    )
    if not parents:
        return
    parent = parents[0].info.run_id
    open_trials = client.search_runs(
        ids, f"tags.`{PARENT_TAG}` = '{parent}' and attributes.status = 'RUNNING'"
    )
    for run in open_trials:
        if interrupted:
            client.set_terminated(run.info.run_id, status="KILLED")
            continue
        reason = end_reasons.get(run.data.tags.get(TRIAL_TAG, ""), {}).get("end_reason")
        client.set_tag(run.info.run_id, "end_reason", reason or "unknown")
        client.set_terminated(run.info.run_id, status="FINISHED")
    if interrupted:
        client.set_terminated(parent, status="KILLED")
        return
    best = _best_result(s, results)
    if best is not None:
        client.log_metric(parent, s.metric, best[0])
        client.set_tag(parent, "best_trial", best[1])
    client.set_terminated(parent, status="FINISHED")


def _best_result(s, results) -> tuple[float, str] | None:
    best = None
    sign = 1 if s.mode == "max" else -1
    for r in results:
        df = r.metrics_dataframe
        if df is None or s.metric not in df or not df[s.metric].notna().any():
            continue
        value = float(df[s.metric].max() if s.mode == "max" else df[s.metric].min())
        if best is None or sign * value > sign * best[0]:
            best = (value, str(r.metrics.get("trial_id")))
    return best
