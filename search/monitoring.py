"""Stopping and bookkeeping on the driver: the patience stopper, why each trial ended, and a
compact progress printout."""

from __future__ import annotations

import csv
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray import tune

from genretune.data import InputError
from genretune.output_files import write_text_atomically
from genretune.results.experiment_dir import (
    END_REASONS_FILE,
    end_reason_line,
    read_end_reasons,
    trial_dirs,
    trial_id_of,
)
from genretune.search.experiment_writer import experiment_being_run, progress_interval_being_run

__all__ = ["END_REASONS_FILE", "BudgetStopper", "PatienceStopper", "TrialMonitor"]
END_ASHA, END_PATIENCE, END_MAX_EPOCHS, END_ERROR = "asha", "patience", "max_epochs", "error"
END_BUDGET = "budget"


class PatienceStopper(tune.Stopper):
    """Stop a trial whose objective has not improved for `patience` epochs.

    The trainable reports `epochs_since_best` from the same training loop that `genretune train`
    runs, so the search stops exactly where a standalone run stops. Stateless, so it survives
    a driver restart unchanged.
    """

    def __init__(self, patience: int) -> None:
        self.patience = patience

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return result.get("epochs_since_best", 0) >= self.patience

    def stop_all(self) -> bool:
        return False


class BudgetStopper(tune.Stopper):
    """End the whole search once its trials have run `budget_epochs` epochs in total.

    One reported result is one trial-epoch. Trials running when the budget is reached stop
    after their current epoch, so a search overshoots by at most one epoch per running trial.
    """

    def __init__(self, budget_epochs: int, read_logged: bool = True) -> None:
        self.budget_epochs = budget_epochs
        self.epochs_seen: set[tuple[str, int]] = set()  # a trial's final result repeats an epoch
        # A resumed search gets this object back as Ray last saved it with the experiment
        # state, which can lag behind the epochs logged since: those are read from the trials'
        # progress files (a set: nothing counts twice), in the experiment directory where it
        # is now (it may have been moved since this object was saved: no path is kept here).
        self.read_logged = read_logged
        self._read_logged = False

    def _count_logged_epochs(self) -> None:
        self._read_logged = True
        if not self.read_logged or experiment_being_run() is None:
            return
        for trial_dir in trial_dirs(experiment_being_run()):
            progress, trial_id = trial_dir / "progress.csv", trial_id_of(trial_dir)
            if not progress.is_file():
                continue
            try:
                with progress.open(newline="", encoding="utf-8") as f:
                    for row in csv.DictReader(f):
                        iteration = row.get("training_iteration")
                        if iteration and iteration.isdigit():
                            self.epochs_seen.add((trial_id, int(iteration)))
            except (OSError, csv.Error):
                continue  # a file being written: its epochs are counted as they report

    def __getstate__(self) -> dict[str, Any]:
        # Whenever this object is unpickled (a resume), it reads the logged epochs again.
        return {**self.__dict__, "_read_logged": False}

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Saved before it stopped keeping a path: it read the logs if it had one.
        state.setdefault("read_logged", state.pop("experiment_path", None) is not None)
        self.__dict__.update(state)

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        if not self._read_logged:
            self._count_logged_epochs()
        self.epochs_seen.add((trial_id, int(result.get("training_iteration", 0))))
        return False

    def stop_all(self) -> bool:
        if not self._read_logged:
            self._count_logged_epochs()
        return len(self.epochs_seen) >= self.budget_epochs


def end_reason(last: dict[str, Any] | None, epochs: int, patience: int) -> str:
    """Why a trial that was not errored ended, from its last reported result."""
    if not last:
        return END_ASHA
    if last.get("epoch", last.get("training_iteration", 0)) >= epochs:
        return END_MAX_EPOCHS
    if last.get("epochs_since_best", 0) >= patience:
        return END_PATIENCE
    return END_ASHA


def _params(config: dict[str, Any], keys: tuple[str, ...]) -> str:
    parts = []
    for k in keys:
        v = config.get(k)
        parts.append(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}")
    return " ".join(parts)


def _reasons_at(paths: list[Path]) -> dict[str, dict[str, Any]]:
    """What the end-reasons files at `paths` hold, merged; what cannot be read is left out
    (the search goes on; the loader names a damaged file)."""
    merged: dict[str, dict[str, Any]] = {}
    for path in paths:
        try:
            merged.update(read_end_reasons(path.parent, warn=False))
        except InputError:
            continue
    return merged


def _append_line(path: Path, line: str) -> None:
    """Append `line` to `path` on a line of its own (after a line a full disk or a kill cut)."""
    with open(path, "a+b") as fh:
        if fh.tell() > 0:
            fh.seek(-1, 2)
            if fh.read(1) != b"\n":
                line = "\n" + line
        fh.write(line.encode("utf-8"))


CUT = (END_ASHA, END_BUDGET)  # trials stopped before their own end


@dataclass(frozen=True)
class Counts:
    """A search's progress, counted over its trials."""

    spent: int  # trial-epochs reported
    done: int  # trials ended (finished, cut or errored)
    running: int
    created: int  # trials drawn so far
    cut: int  # of `done`, stopped by ASHA or the budget
    ended_epochs: list[int]  # epochs of each trial that ended without error


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def progress_text(
    c: Counts,
    num_samples: int,
    budget: int | None,
    max_epochs: int,
    elapsed: float,
    session_epochs: int,
) -> str:
    """The progress line: trial-epochs (and the budget spent), trials done / cut / running /
    to go, elapsed time and an ETA at this session's pace. Without a budget the search is
    expected to run every trial for as many epochs as the trials that ended did on average
    (the most epochs until one has)."""
    epochs = f"{c.spent} trial-epochs"
    if budget:
        epochs += f" ({100 * min(c.spent, budget) / budget:.0f}% of {budget})"
    to_go = max(0, num_samples - c.done - c.running)
    trials = (
        f"trials {c.done} done ({c.cut} cut), {c.running} running, {to_go} to go of {num_samples}"
    )
    per_trial = sum(c.ended_epochs) / len(c.ended_epochs) if c.ended_epochs else max_epochs
    remaining = max(0.0, num_samples * per_trial - c.spent)
    if budget:
        remaining = min(remaining, max(0, budget - c.spent))
    pace = session_epochs / elapsed if elapsed > 0 else 0.0
    eta = f", ETA {_duration(remaining / pace)}" if pace > 0 else ""
    return f"{epochs}; {trials}; {_duration(elapsed)} elapsed{eta}"


class TrialMonitor(tune.Callback):
    """Records why each trial ended (`trial_end_reasons.jsonl` in the experiment dir) and prints
    a line per finished trial plus a short status every `interval` seconds."""

    def __init__(
        self,
        metric: str,
        mode: str,
        epochs: int,
        patience: int,
        searched: tuple[str, ...],
        interval: float = 30.0,
        budget_epochs: int | None = None,
        local_storage: bool = True,
        num_samples: int | None = None,
    ) -> None:
        """`local_storage`: the end reasons go to the experiment dir (local or shared storage)
        where Ray runs it now, else to Ray's driver staging dir, which Ray syncs to cloud
        storage."""
        self.metric, self.mode = metric, mode
        self.epochs, self.patience = epochs, patience
        self.searched = searched
        self.interval = interval
        self.started = time.monotonic()
        self.last_print = 0.0
        self.reasons: dict[str, dict[str, Any]] = {}
        self.budget_epochs = budget_epochs
        self.local_storage = local_storage
        self.num_samples = num_samples
        self.session_epochs = 0  # epochs reported since this driver started (for the ETA)
        self._journals_written: set[Path] = set()  # end-reasons journals this driver rewrote

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Saved before it stopped keeping a path: it wrote beside the trials if it had one.
        state.setdefault("local_storage", state.pop("reasons_dir", None) is not None)
        state.setdefault("num_samples", None)
        self.__dict__.update(state)
        # A resumed search's clock starts now (the saved one is another process's).
        self.started, self.last_print, self.session_epochs = time.monotonic(), 0.0, 0
        self._journals_written = set()

    def _say(self, text: str) -> None:
        elapsed = time.monotonic() - self.started
        # sys.stdout is looked up per call: the callback is pickled with the experiment state.
        print(f"[{elapsed:6.0f}s] {text}", file=sys.stdout, flush=True)

    def _best(self, result: dict[str, Any] | None) -> str:
        value = (result or {}).get(self.metric)
        return f"{self.metric} {value:.4f}" if isinstance(value, (int, float)) else "no result"

    def _record(self, trial, reason: str) -> None:
        last = trial.last_result or {}
        entry = {
            "end_reason": reason,
            "epochs": last.get("training_iteration", 0),
            self.metric: last.get(self.metric),
        }
        self.reasons[trial.trial_id] = entry
        # Ray's driver staging dir, and the experiment dir: Ray copies the staging dir over the
        # experiment dir at each save of its state, and a resumed search starts with a staging
        # dir without the journal, so both get every line (the staging copy first).
        here = trial.remote_experiment_path if self.local_storage else trial.local_experiment_path
        paths = list(dict.fromkeys([
            Path(trial.local_experiment_path) / END_REASONS_FILE, Path(here) / END_REASONS_FILE
        ]))  # fmt: skip
        for path in paths:
            try:
                if path in self._journals_written:
                    _append_line(path, end_reason_line(trial.trial_id, entry))
                    continue
                # The first line this driver writes: the journal is rewritten whole from what
                # both copies and this monitor hold (a line per trial), then only appended to:
                # a trial's end costs the same at the thousandth trial as at the first.
                base = {**_reasons_at(paths), **self.reasons}
                path.parent.mkdir(parents=True, exist_ok=True)
                write_text_atomically(
                    path, "".join(end_reason_line(tid, e) for tid, e in base.items())
                )
                self._journals_written.add(path)
            except OSError as exc:
                from genretune.search import storage_guard

                if not storage_guard.is_storage_error(exc):
                    raise
                # Kept in memory and written whole with the next trial's; the search stops.
                self._journals_written.discard(path)
                storage_guard.note_storage_full(f"{path.name}: {exc.strerror or exc}")
                storage_guard.stop_like_ctrl_c()

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self._say(f"trial {trial.trial_id} start  {_params(trial.config, self.searched)}")

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        self.session_epochs += 1
        now = time.monotonic()
        interval = progress_interval_being_run() or self.interval
        if now - self.last_print < interval:
            return
        self.last_print = now
        scored = [t for t in trials if (t.last_result or {}).get(self.metric) is not None]
        best = (max if self.mode == "max" else min)(
            scored, key=lambda t: t.last_result[self.metric], default=None
        )
        best_text = f"; best {self._best(best.last_result)} ({best.trial_id})" if best else ""
        # Ray updates a trial's last result after its callbacks have seen the new one.
        last = {t.trial_id: (t.last_result or {}) for t in trials}
        last[trial.trial_id] = result
        counts = Counts(
            spent=sum(int(r.get("training_iteration", 0)) for r in last.values()),
            done=sum(t.status in ("TERMINATED", "ERROR") for t in trials),
            running=sum(t.status == "RUNNING" for t in trials),
            created=len(trials),
            cut=sum(self.reasons.get(t.trial_id, {}).get("end_reason") in CUT for t in trials),
            ended_epochs=[
                int((t.last_result or {}).get("training_iteration", 0))
                for t in trials
                if t.status == "TERMINATED"
            ],
        )
        text = progress_text(
            counts,
            self.num_samples or counts.created,
            self.budget_epochs,
            self.epochs,
            now - self.started,
            self.session_epochs,
        )
        self._say(text + best_text)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        reason = end_reason(trial.last_result, self.epochs, self.patience)
        self._record(trial, reason)
        epochs = (trial.last_result or {}).get("training_iteration", 0)
        self._say(
            f"trial {trial.trial_id} ended: {reason} after {epochs} epochs, "
            f"{self._best(trial.last_result)}"
        )

    def on_experiment_end(self, trials, **info) -> None:
        """Trials a search-wide stop (the budget) ended get no on_trial_complete call."""
        if not self.budget_epochs:
            return
        for trial in trials:
            if trial.trial_id in self.reasons or trial.status == "ERROR":
                continue
            reason = end_reason(trial.last_result, self.epochs, self.patience)
            if reason == END_ASHA and self.budget_epochs:
                reason = END_BUDGET
            self._record(trial, reason)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._record(trial, END_ERROR)
        self._say(f"trial {trial.trial_id} ERROR (see {trial.path}/error.txt)")
