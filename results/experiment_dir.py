"""The experiment directory: the one module that knows its files, their names, who writes and
who reads each, and the writer lock. Every other module asks it (docs/experiment.md has the map).

An experiment is what users keep, copy between machines and share on team storage, so it is
treated like a database file:
- it names nothing outside itself: its settings hold no absolute path, and a copy (cp -a,
  rsync, another machine) is a complete, independent experiment;
- one writer at a time: `genretune search` (new, `--resume` or `--overwrite`) holds
  `<storage>/<name>.lock` for its whole run; readers (`results`, `export`) never block and never
  write into it;
- the files genretune writes in it are replaced atomically.
"""

from __future__ import annotations

import os
from pathlib import Path

# genretune's files (the names users and scripts already see).
SETTINGS_FILE = "genretune_search.json"  # written once by `search`; read by every command
OPTUNA_DB = "optuna.db"  # the Optuna study (default storage); written by `search` only
END_REASONS_FILE = "trial_end_reasons.json"  # why each trial ended; written by `search`
# Written when a search ends on its own (sample count, budget or searcher), not when it is
# interrupted: `--resume` of an experiment that has it has nothing to do.
FINISHED_FILE = "search_finished.json"
TRIAL_PREFIX = "trial_"  # trial_<id>/: a trial's params, progress, result and checkpoints

# Ray Tune's files (written by Ray inside `search`; read by Ray's own readers).
TUNER_FILE = "tuner.pkl"
EXPERIMENT_STATE_GLOB = "experiment_state*.json"
SEARCHER_STATE_GLOB = "searcher-state-*.pkl"

LOCK_SUFFIX = ".lock"


def trial_dir_name(trial_id: str) -> str:
    return f"{TRIAL_PREFIX}{trial_id}"


def trial_id_of(trial_dir: Path) -> str:
    return trial_dir.name.removeprefix(TRIAL_PREFIX)


def trial_dirs(path: Path) -> list[Path]:
    """The experiment's trial directories, sorted by name."""
    return sorted(p for p in Path(path).glob(f"{TRIAL_PREFIX}*") if p.is_dir())


def is_experiment_dir(path: Path) -> bool:
    path = Path(path)
    return (path / SETTINGS_FILE).is_file() or (path / TUNER_FILE).is_file()


def lock_path(path: Path) -> Path:
    """The writer lock of the experiment at `path`: beside it, so it never travels with a copy
    of the directory and a refused command creates nothing inside it."""
    path = Path(path)
    return path.with_name(path.name + LOCK_SUFFIX)


def enclosing_experiment(target: Path) -> Path | None:
    """The experiment directory that `target` (a file or directory to be written) lies in, or
    is the writer lock of; None when it is outside every experiment."""
    given = Path(target).expanduser()
    # As written and with symbolic links resolved: a link into an experiment counts.
    for target in dict.fromkeys((Path(os.path.abspath(given)), given.resolve())):
        if target.name.endswith(LOCK_SUFFIX):
            owner = target.with_name(target.name.removesuffix(LOCK_SUFFIX))
            if is_experiment_dir(owner):
                return owner
        for candidate in (target, *target.parents):
            if candidate.is_dir() and is_experiment_dir(candidate):
                return candidate
    return None
