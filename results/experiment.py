"""Read a finished (or running, or copied) experiment directory into pandas.

Uses Ray Tune's own reader (`ExperimentAnalysis`) and the files genretune writes beside it; no
Ray cluster is started.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from genretune.data import InputError
from genretune.results import experiment_dir as layout
from genretune.results.experiment_dir import read_json_object

__all__ = ["Experiment", "load_experiment", "read_json_object"]

# Ray's bookkeeping columns that are not training metrics.
_NOT_METRICS = {
    "timestamp",
    "checkpoint_dir_name",
    "should_checkpoint",
    "done",
    "training_iteration",
    "trial_id",
    "date",
    "time_this_iter_s",
    "time_total_s",
    "pid",
    "hostname",
    "node_ip",
    "time_since_restore",
    "iterations_since_restore",
    "epoch",
    "node_id",
    "device",
}


def resolve_experiment_path(name_or_path: str | Path, storage_path: str | Path = "runs") -> Path:
    """An experiment dir from a path, or from a name under `storage_path`."""
    candidate = Path(name_or_path).expanduser()
    if not candidate.is_dir():
        name = str(name_or_path)
        if "/" in name or name in ("", ".", ".."):
            raise InputError(f"{name_or_path}: experiment directory not found")
        candidate = Path(storage_path).expanduser() / name
    if not candidate.is_dir():
        raise InputError(
            f"{name_or_path}: no experiment of that name in {storage_path} and no such directory"
        )
    if not (candidate / layout.SETTINGS_FILE).is_file() or not list(
        candidate.glob(layout.EXPERIMENT_STATE_GLOB)
    ):
        raise InputError(f"{candidate}: not a genretune experiment directory")
    return candidate.resolve()


@dataclass
class Experiment:
    path: Path
    settings: dict[str, Any]
    trials: pd.DataFrame  # one row per trial
    history: pd.DataFrame  # one row per trial-epoch

    @property
    def metric(self) -> str:
        return self.settings["metric"]

    @property
    def mode(self) -> str:
        return self.settings["mode"]

    @property
    def searched(self) -> list[str]:
        return list(self.settings["space"])

    def check_metric(self, metric: str, given: bool = True) -> None:
        if metric not in self.history.columns:
            if given:
                raise InputError(f"--metric {metric}: never reported in {self.path}")
            raise InputError(
                f"{self.path}: no trial has reported {metric} (the search objective) yet"
            )

    def best(self, metric: str | None = None, mode: str | None = None) -> pd.Series:
        """The row of `trials` with the best value of `metric` over all epochs (by default the
        search metric, in its mode)."""
        if mode not in (None, "max", "min"):
            raise InputError(f"mode {mode!r}: use 'max' or 'min'")
        given = metric is not None and metric != self.metric
        metric = metric or self.metric
        # Another metric than the search's is better in its own direction (min for a loss).
        direction = _direction(self.settings, metric)
        mode = mode or direction
        self.check_metric(metric, given)
        # Each trial's extreme of the metric over its epochs (for the search metric, the value
        # of its best epoch: the table's best_ column).
        scores = self._extreme(metric, mode)
        scored = scores.dropna()
        if scored.empty:
            raise InputError(f"{self.path}: no trial has reported {metric} yet")
        index = scored.idxmax() if mode == "max" else scored.idxmin()
        return self.trials.loc[index]

    def _extreme(self, metric: str, mode: str) -> pd.Series:
        grouped = self.history.groupby("trial_id")[metric]
        values = grouped.max() if mode == "max" else grouped.min()
        return self.trials["trial_id"].map(values)

    def trial(self, trial_id: str) -> pd.Series:
        rows = self.trials[self.trials["trial_id"] == trial_id]
        if rows.empty:
            known = ", ".join(self.trials["trial_id"])
            raise InputError(f"--trial {trial_id}: no such trial in {self.path} (trials: {known})")
        return rows.iloc[0]


_LIVE = ("RUNNING", "PENDING", "PAUSED")
# End reasons of trials that ended without error (written as each trial ends).
_ENDED = ("asha", "patience", "max_epochs", "budget")


def _true_status(saved: str, reason: str | None, has_rows: bool) -> str:
    """A trial's status as it is, not as Ray last saved it: a running search saves its state
    every so often, while the end reasons are written as each trial ends and the history as
    each epoch does. A trial with an end reason has ended; a pending one with epochs runs."""
    if saved in _LIVE and reason in _ENDED:
        return "TERMINATED"
    if saved == "PENDING" and has_rows:
        return "RUNNING"
    return saved


def _numeric_metrics(history: pd.DataFrame) -> list[str]:
    return [
        c
        for c in history.columns
        if c not in _NOT_METRICS
        and not c.startswith("config/")
        and pd.api.types.is_numeric_dtype(history[c])
    ]


def _best_epoch_row(history: pd.DataFrame, settings: dict[str, Any]) -> pd.Series:
    """A trial's best epoch, as its training loop chose it (the last epoch that improved its
    objective: `epochs_since_best` 0), else the first epoch of the search metric's extreme."""
    if "epochs_since_best" in history:
        improved = history.index[history["epochs_since_best"] == 0]
        if len(improved):
            return history.loc[improved[-1]]
    metric = settings["metric"]
    if metric in history and history[metric].notna().any():
        scores = history[metric]
        return history.loc[
            scores.idxmin() if _direction(settings, metric) == "min" else scores.idxmax()
        ]
    return history.iloc[-1]


def _direction(settings: dict[str, Any], metric: str) -> str:
    """The direction the trials table takes each trial's best of `metric` in: the search's mode
    for its own metric, the metric's natural one for any other."""
    from genretune.model.training import natural_mode

    return settings["mode"] if metric == settings["metric"] else natural_mode(metric)


def read_result_rows(result_file: Path) -> tuple[pd.DataFrame, int]:
    """A trial's result.json (one JSON object per line) as Ray's reader makes it, keeping every
    complete row: (rows, lines skipped). A search that is still writing, or was killed, can
    leave the last line cut; Ray's reader then drops the whole trial."""
    rows, skipped = [], 0
    try:
        text = result_file.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return pd.DataFrame(), 0
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            skipped += 1
            continue
        if isinstance(row, dict):
            rows.append(row)
        else:
            skipped += 1
    return (pd.json_normalize(rows, sep="/") if rows else pd.DataFrame()), skipped


def quiet_ray_reader() -> None:
    # Ray logs a multi-line warning for a trial whose result file it cannot parse; genretune
    # reads such a file itself and says so in one line.
    import logging

    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)


def load_experiment(name_or_path: str | Path, storage_path: str | Path = "runs") -> Experiment:
    """The trials and per-epoch history of an experiment directory."""
    from ray.tune import ExperimentAnalysis

    quiet_ray_reader()
    path = resolve_experiment_path(name_or_path, storage_path)
    settings = layout.read_settings(path)
    holder = layout.read_lock(path)
    if holder is not None and not holder["gone"]:
        print(
            f"note: {path.name} is being written by a running search "
            f"({layout.describe_holder(holder)}): these are its results so far",
            file=sys.stderr,
        )
    reasons_file = path / layout.END_REASONS_FILE
    reasons = read_json_object(reasons_file) if reasons_file.is_file() else {}
    if not all(isinstance(v, dict) for v in reasons.values()):
        raise InputError(f"{reasons_file}: not a map of trial ids to end reasons")
    try:
        analysis = ExperimentAnalysis(str(path))
    except Exception as exc:  # Ray raises several types for unreadable state
        raise InputError(f"{path}: cannot read the experiment state ({exc})") from None

    frames = []
    rows = []
    searched = list(settings["space"])
    for trial in analysis.trials:
        df = analysis.trial_dataframes.get(trial.trial_id)
        result_file = path / layout.trial_dir_name(trial.trial_id) / "result.json"
        if (df is None or df.empty) and result_file.is_file() and result_file.stat().st_size:
            df, skipped = read_result_rows(result_file)
            if skipped:
                print(
                    f"warning: {result_file.relative_to(path)}: ignored {skipped} incomplete "
                    f"line(s) (kept {len(df)} complete rows)",
                    file=sys.stderr,
                )
        reason = reasons.get(trial.trial_id, {}).get("end_reason")
        status = _true_status(trial.status, reason, has_rows=df is not None and not df.empty)
        row: dict[str, Any] = {"trial_id": trial.trial_id, "status": status}
        row["end_reason"] = (
            "error"
            if status == "ERROR"
            else ("running" if status in _LIVE else reason or "unknown")
        )
        for key in searched:
            row[key] = trial.config.get(key)
        if df is not None and not df.empty:
            # A driver killed without warning restores trials from the last saved experiment
            # state, which can be a few epochs behind their logs: the rerun epochs are logged
            # twice. The later rows belong to the run that continued, so they are kept.
            df = (
                df.drop_duplicates("training_iteration", keep="last")
                .sort_values("training_iteration")
                .reset_index(drop=True)
                .assign(trial_id=trial.trial_id)
            )
            frames.append(df)
            best = _best_epoch_row(df, settings)
            row["best_epoch"] = int(best["training_iteration"])
            for metric in _numeric_metrics(df):
                # Every best_ value is the best epoch's (the one whose weights export and a
                # retrain reproduce), never a maximum over epochs that mixes several epochs.
                row[metric if metric.startswith("best_") else f"best_{metric}"] = best[metric]
                row[f"last_{metric}"] = df[metric].iloc[-1]
            row["epochs"] = int(df["training_iteration"].max())
            row["wall_time_s"] = float(df["time_total_s"].max())
            for where in ("hostname", "node_ip"):  # where it ran last
                if where in df:
                    row[where] = df[where].iloc[-1]
        else:
            row["epochs"] = 0
        rows.append(row)
    history = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["trial_id"])
    trials = pd.DataFrame(rows)
    for key in searched:
        # Optional integers (top_k, max_genres) would otherwise turn into floats with NaN.
        values = trials[key].dropna() if key in trials else []
        if len(values) and all(float(v).is_integer() for v in values if not isinstance(v, str)):
            if not any(isinstance(v, (str, bool)) for v in values):
                trials[key] = trials[key].astype("Int64")
    metric_col = (
        settings["metric"]
        if settings["metric"].startswith("best_")
        else (f"best_{settings['metric']}")
    )
    if metric_col in trials:
        trials = trials.sort_values(
            metric_col, ascending=settings["mode"] == "min", na_position="last"
        ).reset_index(drop=True)
    return Experiment(path=path, settings=settings, trials=trials, history=history)
