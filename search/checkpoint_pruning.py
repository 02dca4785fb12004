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
finished trial is trimmed to its newest KEEP_FINISHED here. A finished trial is never restarted.
"""

from __future__ import annotations

import logging
from pathlib import PurePosixPath

from ray import tune

logger = logging.getLogger(__name__)

KEEP_WHILE_RUNNING = 8
KEEP_FINISHED = 2
CHECKPOINT_PREFIX = "checkpoint_"


def superseded_checkpoints(names: list[str], keep: int = KEEP_FINISHED) -> list[str]:
    """Checkpoint dir names beyond the newest `keep` (Ray numbers them in order)."""
    ours = sorted(n for n in names if n.startswith(CHECKPOINT_PREFIX))
    return ours[:-keep] if keep else ours


class TrimFinishedTrials(tune.Callback):
    """Deletes a finished trial's checkpoints beyond its newest KEEP_FINISHED, on whatever
    filesystem the experiment is (a local dir, shared storage or a bucket). An errored trial
    keeps all: `--resume` restarts it, and a checkpoint cut by the failure falls back to the
    one before."""

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        checkpoint = trial.checkpoint
        if checkpoint is None:
            return
        import pyarrow.fs

        fs, trial_dir = checkpoint.filesystem, str(PurePosixPath(checkpoint.path).parent)
        try:
            entries = fs.get_file_info(pyarrow.fs.FileSelector(trial_dir))
            for name in superseded_checkpoints([PurePosixPath(e.path).name for e in entries]):
                fs.delete_dir(f"{trial_dir}/{name}")
        except OSError as exc:  # disk space is all that is at stake: say so, go on
            logger.warning("could not trim the checkpoints of trial %s: %s", trial, exc)
