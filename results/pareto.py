"""The Pareto front of a multi-objective experiment: each trial's objective values as Optuna
holds them (at the trial's best epoch by the first objective), and the non-dominated trials."""

from __future__ import annotations

import numpy as np
import pandas as pd

from genretune.data import InputError, first_line
from genretune.results import experiment_dir as layout


def non_dominated(values: np.ndarray, modes: list[str]) -> np.ndarray:
    """(n,) mask of the rows of `values` (n, k) that no other row dominates: at least as good
    on every objective and better on one."""
    signed = values * np.array([1.0 if m == "max" else -1.0 for m in modes])[None, :]
    keep = np.ones(len(signed), dtype=bool)
    for i, row in enumerate(signed):
        better_or_equal = (signed >= row).all(axis=1)
        strictly = (signed > row).any(axis=1)
        keep[i] = not (better_or_equal & strictly).any()
    return keep


SQLITE_HEADER = b"SQLite format 3\x00"


def objectives_of(exp) -> list[tuple[str, str]]:
    """The experiment's (metric, mode) objectives as its settings file records them."""
    objectives = exp.settings.get("objectives") or []
    if not isinstance(objectives, list) or not all(
        isinstance(o, list | tuple)
        and len(o) == 2
        and isinstance(o[0], str)
        and o[1] in ("max", "min")
        for o in objectives
    ):
        raise InputError(
            f"{exp.path / 'genretune_search.json'}: 'objectives' must be a list of "
            f"[metric, max|min] pairs, got {objectives!r}"
        )
    return [(m, mode) for m, mode in objectives]


def _sqlite_problem(url: str) -> str | None:
    """Why the SQLite database at `url` cannot hold a study, or None (other URLs: None).
    Checked before Optuna opens it: Optuna would create a missing or empty file."""
    if not url.startswith("sqlite:///"):
        return None
    from pathlib import Path

    path = Path(url.removeprefix("sqlite:///").partition("?")[0])
    if not path.is_file():
        return f"{path}: no such file (the experiment's Optuna study)"
    with path.open("rb") as f:
        if f.read(len(SQLITE_HEADER)) != SQLITE_HEADER:
            return f"{path}: not an SQLite database (the experiment's Optuna study)"
    return None


def objective_table(exp) -> pd.DataFrame:
    """One row per trial with a value for every objective: the trial table's columns plus one
    column per objective (named by its metric) holding the study's value."""
    import optuna

    objectives = objectives_of(exp)
    if len(objectives) < 2:
        raise InputError(
            f"--pareto: {exp.path.name} is a single-objective search (use --objectives)"
        )
    storage = layout.study_url(exp.path, exp.settings)
    problem = _sqlite_problem(storage)
    if problem:
        raise InputError(problem)
    try:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.load_study(
            study_name=layout.study_name(exp.path, exp.settings), storage=storage
        )
    except Exception as exc:  # Optuna and SQLAlchemy raise many types
        raise InputError(f"{storage}: cannot read the Optuna study ({first_line(exc)})") from None
    metrics = [m for m, _ in objectives]
    rows = []
    for t in study.trials:
        trial_id = t.user_attrs.get("ray_trial_id")
        if t.state.name != "COMPLETE" or trial_id is None or t.values is None:
            continue
        if len(t.values) != len(metrics):
            raise InputError(
                f"{storage}: the study holds {len(t.values)} values per trial, the settings "
                f"{len(metrics)} objectives"
            )
        rows.append({"trial_id": trial_id, **dict(zip(metrics, t.values, strict=True))})
    values = pd.DataFrame(rows, columns=["trial_id", *metrics])
    trials = exp.trials.drop(columns=[m for m in metrics if m in exp.trials])
    return trials.merge(values, on="trial_id", how="inner")


def pareto_front(exp) -> pd.DataFrame:
    """The non-dominated trials, best first by the first objective."""
    objectives = objectives_of(exp)
    table = objective_table(exp)
    metrics = [m for m, _ in objectives]
    modes = [mode for _, mode in objectives]
    if table.empty:
        raise InputError(f"--pareto: no trial of {exp.path.name} has finished yet")
    front = table[non_dominated(table[metrics].to_numpy(dtype=float), modes)]
    return front.sort_values(metrics[0], ascending=modes[0] == "min").reset_index(drop=True)
