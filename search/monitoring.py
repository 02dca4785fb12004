"""Stopping and bookkeeping on the driver: the patience stopper, why each trial ended, and a
compact progress printout."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from ray import tune

END_REASONS_FILE = "trial_end_reasons.json"
END_ASHA, END_PATIENCE, END_MAX_EPOCHS, END_ERROR = "asha", "patience", "max_epochs", "error"


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


class TrialMonitor(tune.Callback):
    """Records why each trial ended (`trial_end_reasons.json` in the experiment dir) and prints
    a line per finished trial plus a short status every `interval` seconds."""

    def __init__(
        self,
        metric: str,
        mode: str,
        epochs: int,
        patience: int,
        searched: tuple[str, ...],
        interval: float = 30.0,
    ) -> None:
        self.metric, self.mode = metric, mode
        self.epochs, self.patience = epochs, patience
        self.searched = searched
        self.interval = interval
        self.started = time.monotonic()
        self.last_print = 0.0
        self.reasons: dict[str, dict[str, Any]] = {}

    def _say(self, text: str) -> None:
        elapsed = time.monotonic() - self.started
        # sys.stdout is looked up per call: the callback is pickled with the experiment state.
        print(f"[{elapsed:6.0f}s] {text}", file=sys.stdout, flush=True)

    def _best(self, result: dict[str, Any] | None) -> str:
        value = (result or {}).get(self.metric)
        return f"{self.metric} {value:.4f}" if isinstance(value, (int, float)) else "no result"

    def _record(self, trial, reason: str) -> None:
        last = trial.last_result or {}
        self.reasons[trial.trial_id] = {
            "end_reason": reason,
            "epochs": last.get("training_iteration", 0),
            self.metric: last.get(self.metric),
        }
        directory = Path(trial.local_experiment_path)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / END_REASONS_FILE
        existing = {}
        if path.is_file():
            try:
                existing = json.loads(path.read_text())
            except json.JSONDecodeError:
                existing = {}
        existing.update(self.reasons)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(existing, indent=1, default=str))
        os.replace(tmp, path)

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self._say(f"trial {trial.trial_id} start  {_params(trial.config, self.searched)}")

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        now = time.monotonic()
        if now - self.last_print < self.interval:
            return
        self.last_print = now
        done = sum(t.status in ("TERMINATED", "ERROR") for t in trials)
        running = sum(t.status == "RUNNING" for t in trials)
        scored = [t for t in trials if (t.last_result or {}).get(self.metric) is not None]
        best = (max if self.mode == "max" else min)(
            scored, key=lambda t: t.last_result[self.metric], default=None
        )
        best_text = f"best {self._best(best.last_result)} ({best.trial_id})" if best else ""
        self._say(f"{done} finished, {running} running, {len(trials)} started; {best_text}")

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        reason = end_reason(trial.last_result, self.epochs, self.patience)
        self._record(trial, reason)
        epochs = (trial.last_result or {}).get("training_iteration", 0)
        self._say(
            f"trial {trial.trial_id} ended: {reason} after {epochs} epochs, "
            f"{self._best(trial.last_result)}"
        )

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._record(trial, END_ERROR)
        self._say(f"trial {trial.trial_id} ERROR (see {trial.path}/error.txt)")
