"""A finished trial's checkpoints are trimmed only once Ray's saved state holds it finished."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from types import SimpleNamespace

from ray.train import Checkpoint

from genretune.search.checkpoint_pruning import (
    KEEP_FINISHED,
    TrimFinishedTrials,
    superseded_checkpoints,
    trim_after_search,
)


def _trial(exp: Path, checkpoints: int) -> tuple[SimpleNamespace, Path]:
    trial_dir = exp / "trial_a"
    for i in range(checkpoints):
        (trial_dir / f"checkpoint_{i:06d}").mkdir(parents=True)
    (trial_dir / "progress.csv").write_text("epoch\n1\n")
    newest = Checkpoint(str(trial_dir / f"checkpoint_{checkpoints - 1:06d}"))
    return SimpleNamespace(checkpoint=newest), trial_dir


def _saved(exp: Path, mtime_ns: int) -> None:
    """Ray saving its experiment state (a new file time each save)."""
    state = exp / "experiment_state-2026-01-01_00-00-00.json"
    state.write_text("{}")
    os.utime(state, ns=(mtime_ns, mtime_ns))


def _checkpoints(trial_dir: Path) -> list[str]:
    return sorted(p.name for p in trial_dir.iterdir() if p.name.startswith("checkpoint_"))


def test_superseded_are_all_but_the_newest():
    names = ["checkpoint_000002", "checkpoint_000000", "checkpoint_000001", "params.json"]
    assert superseded_checkpoints(names, keep=2) == ["checkpoint_000000"]
    assert superseded_checkpoints(names, keep=0) == sorted(names[:3])


def test_trimmed_after_two_saves_of_the_state_not_before(tmp_path):
    exp = tmp_path / "exp"
    trial, trial_dir = _trial(exp, 5)
    _saved(exp, 1_000_000_000)
    callback = TrimFinishedTrials(seconds_between_looks=0)
    callback.setup()
    callback.on_trial_complete(1, [], trial)
    callback.on_step_begin(2, [])
    assert len(_checkpoints(trial_dir)) == 5, "the saved state may still name an older one"
    _saved(exp, 2_000_000_000)  # a save that may have begun before the trial ended
    callback.on_step_begin(3, [])
    assert len(_checkpoints(trial_dir)) == 5
    _saved(exp, 3_000_000_000)  # begun after: it holds the trial as finished
    callback.on_step_begin(4, [])
    assert _checkpoints(trial_dir) == ["checkpoint_000003", "checkpoint_000004"]
    assert (trial_dir / "progress.csv").exists()


def test_what_still_waits_is_trimmed_when_the_search_returns(tmp_path):
    exp = tmp_path / "exp"
    trial, trial_dir = _trial(exp, 4)
    callback = pickle.loads(pickle.dumps(TrimFinishedTrials()))  # as Ray restores it
    callback.setup()
    callback.on_trial_complete(1, [], trial)
    callback.on_step_begin(2, [])
    assert len(_checkpoints(trial_dir)) == 4
    trim_after_search()
    assert len(_checkpoints(trial_dir)) == KEEP_FINISHED
    trim_after_search()  # a second search in the process: nothing left over
    assert len(_checkpoints(trial_dir)) == KEEP_FINISHED


def test_a_trial_without_checkpoints_is_left_alone(tmp_path):
    callback = TrimFinishedTrials(seconds_between_looks=0)
    callback.on_trial_complete(1, [], SimpleNamespace(checkpoint=None))
    callback.on_step_begin(2, [])
    callback.trim_waiting()
