"""What `--resume` checks of an experiment's saved state before Ray restores anything: each
damaged or missing file is one line naming it, what is wrong and what still works, and the
experiment is left as it was (Ray's restore would otherwise fail part-way, with a traceback,
after rewriting some of it)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from urllib.parse import quote

from genretune.data import InputError, first_line
from genretune.results import experiment_dir as layout
from genretune.search.settings import SearchSettings


def readable_trials(path: Path) -> int:
    """Trials whose history `genretune results` can still read."""
    return sum(
        (d / "result.json").is_file() or (d / "progress.csv").is_file()
        for d in layout.trial_dirs(path)
    )


def _refuse(file: Path, what: str, path: Path) -> InputError:
    n = readable_trials(path)
    still = (
        f"`genretune results {path.name}` can still read its {n} trial(s)"
        if n
        else "no trial history is left to read"
    )
    return InputError(f"{file}: {what}; the search cannot be resumed ({still})")


def check_saved_state(s: SearchSettings) -> None:
    """Refuse a resume whose saved state Ray or Optuna could not read back."""
    path = Path(s.experiment_path)
    _check_tuner_file(path)
    _check_experiment_state(path)
    _check_searcher_state(path)
    if not s.optuna_storage:
        check_own_study(path, s.study)


def _check_tuner_file(path: Path) -> None:
    from genretune.search.optuna_search import searcher_unpickler, searchers_left_unopened

    file = path / layout.TUNER_FILE
    if not file.is_file():
        raise _refuse(file, "missing (Ray's record of how the search was built)", path)
    try:
        # The experiment's own file, which Ray's restore unpickles too.
        with file.open("rb") as fh, searchers_left_unopened():
            searcher_unpickler(fh).load()
    except Exception as exc:  # unpickling can raise anything
        raise _refuse(file, f"damaged ({type(exc).__name__}: {first_line(exc)})", path) from None


def _check_experiment_state(path: Path) -> None:
    states = sorted(path.glob(layout.EXPERIMENT_STATE_GLOB))
    if not states:
        raise _refuse(path / "experiment_state-*.json", "missing (Ray's saved trials)", path)
    newest = max(states, key=lambda p: p.name)  # Ray restores the newest (a timestamp)
    try:
        state = json.loads(newest.read_text(encoding="utf-8"))
        if not isinstance(state, dict) or "trial_data" not in state:
            raise ValueError("no trial data")
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise _refuse(newest, f"damaged ({first_line(exc)})", path) from None


def _check_searcher_state(path: Path) -> None:
    from genretune.search.optuna_search import read_searcher_state

    for file in sorted(path.glob(layout.SEARCHER_STATE_GLOB)):
        try:
            read_searcher_state(str(file))
        except Exception as exc:  # unpickling can raise anything
            raise _refuse(
                file, f"damaged ({type(exc).__name__}: {first_line(exc)})", path
            ) from None


def check_own_study(path: Path, study: str) -> None:
    """The experiment's optuna.db holds its study, and no other process locks it."""
    file = path / layout.OPTUNA_DB
    if not file.is_file():
        raise _refuse(file, "missing (the Optuna study TPE learns from)", path)
    try:
        # Read-only: a check that changes nothing, also in a damaged file.
        db = sqlite3.connect(f"file:{quote(str(file))}?mode=ro", uri=True, timeout=2.0)
        try:
            rows = db.execute("SELECT study_name FROM studies").fetchall()
            db.execute("SELECT COUNT(*) FROM trials").fetchone()
        finally:
            db.close()
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc):
            raise _refuse(file, "locked by another process (is a search using it?)", path) from None
        raise _refuse(file, f"not an Optuna study database ({exc})", path) from None
    except sqlite3.DatabaseError as exc:
        raise _refuse(file, f"damaged ({exc})", path) from None
    if (study,) not in rows:
        raise _refuse(file, f"holds no study named {study!r}", path)
