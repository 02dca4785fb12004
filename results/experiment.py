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
from genretune.results import writer_lock
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


def _history(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Every trial's epochs (result rows with their trial_id), in trial order then epoch order,
    nested keys joined by / as Ray's reader does. A driver killed without warning
    restores trials from the last saved experiment state, which can be a few epochs behind
    their logs: the rerun epochs are logged twice. The later rows belong to the run that
    continued, so they are kept."""
    if not records:
        return pd.DataFrame(columns=["trial_id"])
    history = pd.json_normalize(records, sep="/")
    history["_order"] = history["trial_id"].map({t: i for i, t in enumerate(dict.fromkeys(
        history["trial_id"]))})  # fmt: skip
    history = history.drop_duplicates(["trial_id", "training_iteration"], keep="last")
    history = history.sort_values(["_order", "training_iteration"], kind="stable")
    return history.drop(columns="_order").reset_index(drop=True)


def _best_epoch_rows(history: pd.DataFrame, settings: dict[str, Any]) -> pd.DataFrame:
    """Each trial's best epoch (indexed by trial id), as its training loop chose it: the last
    epoch that improved its objective (`epochs_since_best` 0), else the first epoch of the
    search metric's extreme, else its last epoch."""
    by_trial = history.groupby("trial_id", sort=False)
    picked = pd.Series(by_trial.tail(1).index, index=by_trial.tail(1)["trial_id"].to_numpy())
    metric = settings["metric"]
    if metric in history:
        scores = history[metric].astype(float)
        scored = scores.notna()
        if scored.any():
            grouped = scores[scored].groupby(history.loc[scored, "trial_id"], sort=False)
            lowest = _direction(settings, metric) == "min"
            extreme = grouped.idxmin() if lowest else grouped.idxmax()
            picked.loc[extreme.index] = extreme.to_numpy()
    if "epochs_since_best" in history:
        improved = history[history["epochs_since_best"] == 0]
        if len(improved):
            last_improved = improved.groupby("trial_id", sort=False).tail(1)
            picked.loc[last_improved["trial_id"].to_numpy()] = last_improved.index.to_numpy()
    return history.loc[picked.to_numpy()].set_index("trial_id")


def _trial_summaries(history: pd.DataFrame, settings: dict[str, Any]) -> pd.DataFrame:
    """Per trial (indexed by trial id): its best epoch, each metric's value at that epoch
    (`best_<metric>`: the epoch whose weights export and a retrain reproduce, never a maximum
    over epochs that mixes several) and at its last (`last_<metric>`), epochs, wall time and
    where it ran last."""
    best = _best_epoch_rows(history, settings)
    last = history.groupby("trial_id", sort=False).tail(1).set_index("trial_id")
    columns: dict[str, pd.Series] = {"best_epoch": best["training_iteration"].astype(int)}
    for metric in _numeric_metrics(history):
        columns[metric if metric.startswith("best_") else f"best_{metric}"] = best[metric]
        columns[f"last_{metric}"] = last[metric]
    by_trial = history.groupby("trial_id", sort=False)
    columns["epochs"] = by_trial["training_iteration"].max().astype(int)
    columns["wall_time_s"] = by_trial["time_total_s"].max().astype(float)
    for where in ("hostname", "node_ip"):  # where it ran last
        if where in last:
            columns[where] = last[where]
    return pd.DataFrame(columns)


def _optional_integers(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    """`frame` with `column` as nullable integers when every value it has is a whole number
    (an integer searched with a "none" choice), else as it is."""
    values = frame[column].dropna() if column in frame else []
    if not len(values) or any(isinstance(v, (str, bool)) for v in values):
        return frame
    if all(float(v).is_integer() for v in values):
        frame[column] = frame[column].astype("Int64")
    return frame


def _direction(settings: dict[str, Any], metric: str) -> str:
    """The direction the trials table takes each trial's best of `metric` in: the search's mode
    for its own metric, the metric's natural one for any other."""
    from genretune.model.metric_keys import natural_mode

    return settings["mode"] if metric == settings["metric"] else natural_mode(metric)


def read_result_records(result_file: Path) -> tuple[list[dict[str, Any]], int]:
    """A trial's result.json (one JSON object per line), keeping every complete row: (rows,
    lines skipped). A search that is still writing, or was killed, can leave the last line cut;
    Ray's own reader then drops the whole trial."""
    rows, skipped = [], 0
    try:
        text = result_file.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return [], 0
    lines = [line for line in text.splitlines() if line.strip()]
    try:  # every line whole (the common case): one parse
        parsed = json.loads("[" + ",".join(lines) + "]")
        if all(isinstance(row, dict) for row in parsed):
            return parsed, 0
    except json.JSONDecodeError:
        pass
    for line in lines:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            skipped += 1
            continue
        if isinstance(row, dict):
            rows.append(row)
        else:
            skipped += 1
    return rows, skipped


def saved_trials(path: Path) -> list:
    """The trials (Ray `Trial` objects: id, status, config) of the experiment state Ray saved
    in `path`, read by Ray's own reader without each trial's results, which genretune reads
    itself, all trials at once (Ray's reader builds a DataFrame per trial: most of the time of
    loading a 1,000-trial experiment)."""
    from genretune.results.internals import trials_only_analysis

    quiet_ray_reader()
    return trials_only_analysis(str(path)).trials


def quiet_ray_reader() -> None:
    # Ray logs a multi-line warning for a trial whose result file it cannot parse; genretune
    # reads such a file itself and says so in one line.
    import logging

    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)


def load_experiment(name_or_path: str | Path, storage_path: str | Path = "runs") -> Experiment:
    """The trials and per-epoch history of an experiment directory."""
    path = resolve_experiment_path(name_or_path, storage_path)
    settings = layout.read_settings(path)
    holder = writer_lock.read_lock(path)
    if holder is not None and not holder["gone"]:
        print(
            f"note: {path.name} is being written by a running search "
            f"({writer_lock.describe_holder(holder)}): these are its results so far",
            file=sys.stderr,
        )
    reasons = layout.read_end_reasons(path)
    try:
        saved = saved_trials(path)
    except Exception as exc:  # Ray raises several types for unreadable state
        raise InputError(f"{path}: cannot read the experiment state ({exc})") from None

    searched = list(settings["space"])
    rows, records = _trial_rows(path, saved, reasons, searched)
    history = _history(records)
    trials = pd.DataFrame(rows)
    if not history.empty:
        summaries = _trial_summaries(history, settings)
        trials = trials.join(summaries, on="trial_id")
    trials["epochs"] = trials["epochs"].fillna(0).astype(int) if "epochs" in trials else 0
    for key in searched:
        # Optional integers (top_k, max_genres) would otherwise turn into floats with NaN.
        trials = _optional_integers(trials, key)
        history = _optional_integers(history, f"config/{key}")
    trials = _best_first(trials, settings)
    return Experiment(path=path, settings=settings, trials=trials, history=history)


def _trial_rows(path: Path, saved: list, reasons: dict, searched: list[str]):
    """(a row per trial: id, status, end reason, searched values; every trial's result
    records tagged with its id), from Ray's saved trials and each trial's result.json."""
    records: list[dict[str, Any]] = []
    rows = []
    for trial in saved:
        result_file = path / layout.trial_dir_name(trial.trial_id) / "result.json"
        results, skipped = read_result_records(result_file)
        if skipped:
            print(
                f"warning: {result_file.relative_to(path)}: ignored {skipped} incomplete "
                f"line(s) (kept {len(results)} complete rows)",
                file=sys.stderr,
            )
        for result in results:
            result["trial_id"] = trial.trial_id
        records.extend(results)
        reason = reasons.get(trial.trial_id, {}).get("end_reason")
        status = _true_status(trial.status, reason, has_rows=bool(results))
        row: dict[str, Any] = {"trial_id": trial.trial_id, "status": status}
        row["end_reason"] = (
            "error"
            if status == "ERROR"
            else ("running" if status in _LIVE else reason or "unknown")
        )
        for key in searched:
            row[key] = trial.config.get(key)
        rows.append(row)
    return rows, records


def _best_first(trials: pd.DataFrame, settings: dict[str, Any]) -> pd.DataFrame:
    """Trials by the search's metric (its best_ column), best first, unranked ones last."""
    metric = settings["metric"]
    column = metric if metric.startswith("best_") else f"best_{metric}"
    if column not in trials:
        return trials
    return trials.sort_values(
        column, ascending=settings["mode"] == "min", na_position="last"
    ).reset_index(drop=True)
