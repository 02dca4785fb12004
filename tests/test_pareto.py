"""A two-objective search on real Ray: its Pareto front, export from the front, retraining it,
and resuming it."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
from pathlib import Path

import optuna
import pandas as pd
import pytest
import sqlalchemy
from helpers import TINY_SEARCH, interrupt_search

from genretune.search.cli import main

pytestmark = pytest.mark.slow

OBJECTIVES = "val_f1,val_coverage"
SEARCH = [
    *TINY_SEARCH,
    *("--epochs", "3", "--patience", "3", "--grace-period", "1", "--reduction-factor", "2"),
    *("--objectives", OBJECTIVES, "--progress-interval", "1000"),
]


def _study(exp: Path) -> optuna.Study:
    return optuna.load_study(study_name=exp.name, storage=f"sqlite:///{exp / 'optuna.db'}")


def _finished_count(exp: Path) -> int:
    """Trials the study has finished (0 until the search has created its study)."""
    if not (exp / "optuna.db").exists():
        return 0
    try:
        return sum(t.state.name == "COMPLETE" for t in _study(exp).trials)
    except KeyError:  # the database exists, the study not yet
        return 0
    except sqlalchemy.exc.SQLAlchemyError:
        # The search is creating the database: opening it at that moment races to stamp its
        # schema version (a unique row). Ask again at the next poll.
        return 0


def _brute_force_front(points: dict[str, tuple[float, float]]) -> set[str]:
    """Trials no other trial matches or beats on both objectives and beats on one."""
    front = set()
    for tid, (a, b) in points.items():
        beaten = any(
            (x >= a and y >= b) and (x > a or y > b)
            for other, (x, y) in points.items()
            if other != tid
        )
        if not beaten:
            front.add(tid)
    return front


@pytest.fixture(scope="module")
def two_objective(local_ray, tmp_path_factory):
    root = tmp_path_factory.mktemp("pareto")
    argv = ["search", *SEARCH, "--num-samples", "6", "--name", "mo", "--storage-path", str(root)]
    # Min-samples reaching high makes trials keep different genre sets: coverage varies.
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(argv) == 0
    (root / "search_stdout.txt").write_text(printed.getvalue())
    return root / "mo"


def test_the_front_is_the_non_dominated_trials_and_the_study_holds_both_values(
    two_objective, capsys
):
    study = _study(two_objective)
    finished = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(finished) == 6
    assert all(len(t.values) == 2 for t in finished)
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MAXIMIZE"]
    points = {t.user_attrs["ray_trial_id"]: tuple(t.values) for t in finished}
    # Each trial's values are those of its best epoch by the first objective.
    for tid, (f1, coverage) in points.items():
        curve = pd.read_csv(two_objective / f"trial_{tid}" / "progress.csv")
        best = curve.loc[curve["val_f1"].idxmax()]
        assert f1 == pytest.approx(best["val_f1"]) and coverage == pytest.approx(
            best["val_coverage"]
        )
    # The search's own summary lists the same front.
    printed = (two_objective.parent / "search_stdout.txt").read_text()
    listed = re.findall(r"^  (\w{8}): val_f1 ", printed, flags=re.MULTILINE)
    assert f"Pareto front: {len(listed)} trial(s) on val_f1, val_coverage" in printed
    assert set(listed) == _brute_force_front(points)
    capsys.readouterr()
    out = two_objective.parent / "front.csv"
    argv = ["results", str(two_objective), "--pareto", "--format", "csv", "--output", str(out)]
    assert main(argv) == 0
    front = pd.read_csv(out, dtype={"trial_id": str})  # an id may be all digits
    assert set(front["trial_id"]) == _brute_force_front(points)
    assert list(front["val_f1"]) == sorted(front["val_f1"], reverse=True)
    plots = two_objective.parent / "plots"
    assert main(["results", str(two_objective), "--plots", str(plots)]) == 0
    assert (plots / "pareto_front.png").stat().st_size > 0


def test_export_from_the_front_and_retrain_it(two_objective, tmp_path, capsys):
    study = _study(two_objective)
    points = {
        t.user_attrs["ray_trial_id"]: tuple(t.values)
        for t in study.trials
        if t.state.name == "COMPLETE"
    }
    front = _brute_force_front(points)
    # The front's lowest coverage: every front trial satisfies it; the best F1 among them wins.
    floor = min(points[t][1] for t in front)
    expected = max(front, key=lambda t: points[t][0])
    best_json = tmp_path / "best.json"
    argv = ["export", str(two_objective), "--pareto", "--where", f"val_coverage >= {floor}"]
    assert main([*argv, "-o", str(best_json)]) == 0
    provenance = json.loads(best_json.read_text())["provenance"]
    assert provenance["trial_id"] == expected
    assert provenance["selected_by"] == (
        f"Pareto front over {OBJECTIVES.replace(',', ', ')}, best by the first, where "
        f"val_coverage >= {floor}"
    )
    # The most covering front trial, when only it qualifies.
    top = max(points[t][1] for t in front)
    chosen = max((t for t in front if points[t][1] >= top), key=lambda t: points[t][0])
    other = tmp_path / "cover.json"
    argv = ["export", str(two_objective), "--pareto", "--where", f"val_coverage >= {top}"]
    assert main([*argv, "-o", str(other)]) == 0
    assert json.loads(other.read_text())["provenance"]["trial_id"] == chosen
    # Retraining the exported config repeats the trial epoch for epoch.
    models = tmp_path / "models"
    assert main(["train", "--config", str(best_json), "--output-dir", str(models)]) == 0
    (run_dir,) = list(models.iterdir())
    retrained = pd.read_csv(run_dir / "history.csv")
    trial = pd.read_csv(two_objective / f"trial_{expected}" / "progress.csv")
    assert list(retrained["val_f1"]) == pytest.approx(list(trial["val_f1"]), abs=1e-9)
    assert list(retrained["val_coverage"]) == pytest.approx(list(trial["val_coverage"]))
    # Nobody on the front satisfies an impossible condition: one line, exit 2, nothing written.
    capsys.readouterr()
    none = tmp_path / "none.json"
    argv = ["export", str(two_objective), "--pareto", "--where", "val_coverage > 1"]
    assert main([*argv, "-o", str(none)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no trial on the Pareto front satisfies it" in err[0]
    assert not none.exists()
    # Not a condition, or a name of the exporter's own: refused the same way.
    for where, said in (
        ("val_f1", "not a condition"),
        ("@where == @where", "UndefinedVariableError"),
    ):
        argv = ["export", str(two_objective), "--pareto", "--where", where, "-o", str(none)]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and said in err[0], err
        assert not none.exists()


def test_resume_keeps_the_front(local_ray, tmp_path, isolated_cache):
    env = {**os.environ, "GENRETUNE_CACHE_DIR": str(isolated_cache)}
    argv = ["search", *SEARCH, "--num-samples", "5", "--max-concurrent", "1"]
    argv += ["--name", "again", "--storage-path", str(tmp_path)]
    exp = tmp_path / "again"
    interrupt_search(argv, env, lambda: _finished_count(exp) >= 2)
    before = {
        t.user_attrs["ray_trial_id"]: tuple(t.values)
        for t in _study(exp).trials
        if t.state.name == "COMPLETE"
    }
    assert 2 <= len(before) < 5
    assert main(["search", "--resume", "again", "--storage-path", str(tmp_path)]) == 0
    after = {
        t.user_attrs["ray_trial_id"]: tuple(t.values)
        for t in _study(exp).trials
        if t.state.name == "COMPLETE"
    }
    assert len(after) == 5 and all(after[t] == v for t, v in before.items())
    saved = json.loads((exp / "genretune_search.json").read_text())
    assert saved["objectives"] == [["val_f1", "max"], ["val_coverage", "max"]]
    out = tmp_path / "front.csv"
    assert main(["results", str(exp), "--pareto", "--format", "csv", "--output", str(out)]) == 0
    assert set(pd.read_csv(out, dtype={"trial_id": str})["trial_id"]) == _brute_force_front(after)


def test_trials_the_budget_stopped_are_on_the_front(local_ray, tmp_path, capsys):
    """Ray stops the trials running when the budget is spent without telling the searcher: they
    still reach the study, with the values of their best epoch, and the front."""
    argv = ["search", *TINY_SEARCH, "--epochs", "3", "--patience", "3", "--scheduler", "fifo",
            "--objectives", OBJECTIVES, "--num-samples", "6",
            "--budget-epochs", "5", "--max-concurrent", "2", "--name", "bud",
            "--storage-path", str(tmp_path)]  # fmt: skip
    assert main(argv) == 0
    exp = tmp_path / "bud"
    study = _study(exp)
    assert [t.number for t in study.trials if t.state.name == "RUNNING"] == []
    by_id = {t.user_attrs["ray_trial_id"]: t for t in study.trials}
    points, cut = {}, 0
    for progress in exp.glob("trial_*/progress.csv"):
        curve = pd.read_csv(progress)
        tid = progress.parent.name.removeprefix("trial_")
        t = by_id[tid]
        assert t.state.name == "COMPLETE", (tid, t.state)
        best = curve.loc[curve["val_f1"].idxmax()]
        assert t.values == pytest.approx([best["val_f1"], best["val_coverage"]])
        points[tid] = tuple(t.values)
        cut += len(curve) < 3  # fifo, patience 3: fewer than 3 epochs = stopped by the budget
    # Two trials at once and 5 epochs: one of the first two cannot have finished its 3.
    assert cut >= 1 and len(points) >= 2
    capsys.readouterr()
    out = tmp_path / "front.csv"
    assert main(["results", str(exp), "--pareto", "--format", "csv", "--output", str(out)]) == 0
    assert set(pd.read_csv(out, dtype={"trial_id": str})["trial_id"]) == _brute_force_front(points)
