"""How many checkpoints a trial keeps, and the callback that trims a finished trial's.

Every checkpoint holds the trial's best-so-far weights (results/checkpoints.py), so a trial
needs only its newest ones: export and retrain read the newest readable one, and Ray restarts a
trial from its newest.

Ray keeps at most `num_to_keep` checkpoints per trial, and to keep its saved experiment state
pointing at checkpoints that exist it saves that state whenever any trial has written
`num_to_keep` checkpoints since the last save. Each save writes every trial's state, so with
`num_to_keep=2` and short epochs a 1,000-trial search spent a growing share of the driver's
time saving it (benchmarks/scale.py: 1.14x the ideal wall time at 512 trials against 1.09x
without those saves). Running trials keep up to KEEP_WHILE_RUNNING checkpoints, which makes
those saves rare (Ray saves on its own clock, at least every 10 s, far more often), and a
finished trial is trimmed to its newest KEEP_FINISHED here.

A finished trial is trimmed only once Ray's saved state knows it finished: until then the saved
state may still name an older checkpoint of it as the one to restart from, and a driver killed
in that window would, on `--resume`, restart the trial from a checkpoint that is gone. The saved
state is seen to be newer than a trial's end when the state file in the experiment dir has
changed twice since (the first change may be a save that began before the trial ended). What is
still waiting when the search returns (its last save done) is trimmed then (`trim_waiting`).
"""

from __future__ import annotations

import logging
import time
from pathlib import PurePosixPath

import pyarrow.fs
from ray import tune

logger = logging.getLogger(__name__)

KEEP_WHILE_RUNNING = 8
KEEP_FINISHED = 2
CHECKPOINT_PREFIX = "checkpoint_"
STATE_PREFIX = "experiment_state"
SECONDS_BETWEEN_LOOKS = 10.0

_callbacks: list[TrimFinishedTrials] = []  # those of the search running in this process


def superseded_checkpoints(names: list[str], keep: int = KEEP_FINISHED) -> list[str]:
    """Checkpoint dir names beyond the newest `keep` (Ray numbers them in order)."""
    ours = sorted(n for n in names if n.startswith(CHECKPOINT_PREFIX))
    return ours[:-keep] if keep else ours


def trim_trial_checkpoints(fs: pyarrow.fs.FileSystem, trial_dir: str) -> None:
    """Deletes a trial's checkpoints beyond its newest KEEP_FINISHED, on whatever filesystem
    the experiment is (a local dir, shared storage or a bucket)."""
    try:
        entries = fs.get_file_info(pyarrow.fs.FileSelector(trial_dir))
        for name in superseded_checkpoints([PurePosixPath(e.path).name for e in entries]):
            fs.delete_dir(f"{trial_dir}/{name}")
    except OSError as exc:  # disk space is all that is at stake: say so, go on
        logger.warning("could not trim the checkpoints of %s: %s", trial_dir, exc)


class TrimFinishedTrials(tune.Callback):
    """Trims each finished trial's checkpoints once Ray's saved state holds it as finished. An
    errored trial keeps all: `--resume` restarts it, and a checkpoint cut by the failure falls
    back to the one before."""

    def __init__(self, seconds_between_looks: float = SECONDS_BETWEEN_LOOKS) -> None:
        self.seconds_between_looks = seconds_between_looks
        self._reset()

    def _reset(self) -> None:
        self._waiting: list[tuple[int, pyarrow.fs.FileSystem, str]] = []  # (changes, fs, dir)
        self._state_changes = 0
        self._state_seen: tuple[str, int] | None = None  # (file, mtime ns)
        self._last_look = 0.0

    def __getstate__(self) -> dict:  # saved with the tuner: the settings, not the run
        return {"seconds_between_looks": self.seconds_between_looks}

    def __setstate__(self, state: dict) -> None:
        self.seconds_between_looks = state["seconds_between_looks"]
        self._reset()

    def setup(self, **info) -> None:
        _callbacks.clear()
        _callbacks.append(self)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        checkpoint = trial.checkpoint
        if checkpoint is None:
            return
        trial_dir = str(PurePosixPath(checkpoint.path).parent)
        self._look(checkpoint.filesystem, str(PurePosixPath(trial_dir).parent), force=True)
        self._waiting.append((self._state_changes, checkpoint.filesystem, trial_dir))

    def on_step_begin(self, iteration, trials, **info) -> None:
        if not self._waiting:
            return
        _, fs, trial_dir = self._waiting[0]
        self._look(fs, str(PurePosixPath(trial_dir).parent))
        ready = [w for w in self._waiting if self._state_changes >= w[0] + 2]
        self._waiting = [w for w in self._waiting if self._state_changes < w[0] + 2]
        for _, fs, trial_dir in ready:
            trim_trial_checkpoints(fs, trial_dir)

    def _look(self, fs: pyarrow.fs.FileSystem, experiment_dir: str, force: bool = False) -> None:
        """Counts the changes of the saved state file seen so far (at most one look per
        seconds_between_looks unless forced)."""
        now = time.monotonic()
        if not force and now - self._last_look < self.seconds_between_looks:
            return
        self._last_look = now
        try:
            seen = _state_file(fs, experiment_dir, self._state_seen)
        except OSError as exc:
            logger.debug("could not read the saved state's time: %s", exc)
            return
        if seen is not None and seen != self._state_seen:
            if self._state_seen is not None:
                self._state_changes += 1
            self._state_seen = seen
        elif seen is None and self._state_seen is None:
            self._state_seen = ("", 0)  # no state saved yet: its first save is a change

    def trim_waiting(self) -> None:
        """Trims every finished trial still waiting (call once the search's last save is done)."""
        waiting, self._waiting = self._waiting, []
        for _, fs, trial_dir in waiting:
            trim_trial_checkpoints(fs, trial_dir)


def _state_file(
    fs: pyarrow.fs.FileSystem, experiment_dir: str, last: tuple[str, int] | None
) -> tuple[str, int] | None:
    """(path, mtime in ns) of Ray's saved experiment state file, None if there is none yet."""
    if last and last[0]:
        (info,) = fs.get_file_info([last[0]])
        if info.type == pyarrow.fs.FileType.File:
            return info.path, info.mtime_ns or 0
    states = [
        info
        for info in fs.get_file_info(pyarrow.fs.FileSelector(experiment_dir))
        if PurePosixPath(info.path).name.startswith(STATE_PREFIX) and info.path.endswith(".json")
    ]
    if not states:
        return None
    newest = max(states, key=lambda info: info.mtime_ns or 0)
    return newest.path, newest.mtime_ns or 0


def trim_after_search() -> None:
    """Trims the finished trials the search in this process left waiting; called once Ray has
    returned (its last save of the experiment state done)."""
    for callback in _callbacks:
        callback.trim_waiting()
    _callbacks.clear()
