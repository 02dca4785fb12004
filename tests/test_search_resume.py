"""A search whose driver is interrupted (SIGINT) or killed (SIGKILL) is finished by
`genretune search --resume`."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import optuna
import pandas as pd
import pytest
from helpers import interrupt_search

from genretune.results import load_experiment
from genretune.search.cli import main

# Starts Ray or trains real models: the full suite (make test), not the fast lane.
pytestmark = pytest.mark.slow

ARGS = [
    "--synthetic-scale",
    "0.02",
    "--base-channels",
    "4",
    "--epochs",
    "4",
    "--patience",
    "4",
    "--grace-period",
    "4",
    "--num-samples",
    "5",
    "--progress-interval",
    "1000",
]


def _finished(exp: Path) -> dict[str, str]:
    """progress.csv text of the trials that ran all 4 epochs and that the experiment state
    Ray saved holds as ended: what a resume restores. (A trial ends in Ray an instant before
    the next save of its state, every second here; a SIGKILL in that instant leaves it saved
    as running from its checkpoint before, and a resume runs its last epoch again.)"""
    ended = _saved_as_ended(exp)
    out = {}
    for progress in exp.glob("trial_*/progress.csv"):
        text = progress.read_text()
        ran_all = len(text.strip().splitlines()) - 1 >= 4
        if ran_all and progress.parent.name.removeprefix("trial_") in ended:
            out[progress.parent.name] = text
    return out


def _saved_as_ended(exp: Path) -> set[str]:
    """Ids of the trials the newest saved experiment state holds as TERMINATED."""
    try:
        state = json.loads(max(exp.glob("experiment_state-*.json")).read_text())
        trials = [json.loads(trial) for trial, _ in state["trial_data"]]
    except (ValueError, OSError, KeyError, TypeError):
        return set()  # not saved yet, or being written
    return {t["trial_id"] for t in trials if t.get("status") == "TERMINATED"}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["sigint", "sigkill"])
def test_interrupted_search_resumes_to_completion(local_ray, tmp_path, isolated_cache, sig):
    env = {**os.environ, "GENRETUNE_CACHE_DIR": str(isolated_cache)}
    exp = tmp_path / "inter"
    argv = ["search", *ARGS, "--name", "inter", "--storage-path", str(tmp_path)]
    stopped = interrupt_search(argv, env, lambda: len(_finished(exp)) >= 2, sig)
    finished_before = _finished(exp)
    assert 2 <= len(finished_before) < 5
    if sig == signal.SIGINT:
        # Ray catches Ctrl-C and returns as if the search had ended: genretune tells it apart,
        # says how to finish it (exit 130, as for any Ctrl-C) and does not mark it finished.
        assert stopped.returncode == 130, stopped.stdout[-3000:]
        assert "search interrupted" in stopped.stdout
        assert "genretune search --resume inter" in stopped.stdout
        assert "Traceback" not in stopped.stdout
        assert "genretune export" not in stopped.stdout
        assert not (exp / "search_finished.json").exists()

    resume = ["search", "--resume", "inter", "--storage-path", str(tmp_path)]
    code = main([*resume, "--progress-interval", "1000"])
    assert code == 0
    assert (exp / "search_finished.json").is_file()
    trial_dirs = sorted(p.name for p in exp.glob("trial_*") if p.is_dir())
    assert len(trial_dirs) == 5, trial_dirs
    for name, before in finished_before.items():
        assert (exp / name / "progress.csv").read_text() == before, f"{name} was rerun"
    for progress in exp.glob("trial_*/progress.csv"):
        epochs = pd.read_csv(progress)["epoch"]
        assert list(epochs) == list(range(1, len(epochs) + 1)), f"{progress}: {list(epochs)}"
    study = optuna.load_study(study_name="inter", storage=f"sqlite:///{exp / 'optuna.db'}")
    states = [t.state for t in study.trials]
    assert states.count(optuna.trial.TrialState.COMPLETE) == 5, states
    # A sample drawn in the instant before a SIGKILL was never run: it is closed, not left open.
    assert optuna.trial.TrialState.RUNNING not in states, states
    completed = sorted(
        tuple(sorted(t.params.items())) for t in study.trials if t.state.name == "COMPLETE"
    )

    exp_view = load_experiment(exp)
    assert exp_view.trials["trial_id"].is_unique and len(exp_view.trials) == 5
    assert set(exp_view.trials["status"]) == {"TERMINATED"}
    assert not exp_view.history.duplicated(["trial_id", "training_iteration"]).any()
    searched = list(exp_view.settings["space"])
    ran = sorted(
        tuple(sorted((k, row[k]) for k in searched if pd.notna(row[k])))
        for _, row in exp_view.trials.iterrows()
    )
    assert len(set(ran)) == 5 and len(set(completed)) == 5


def test_a_resumed_budget_search_spends_only_what_is_left(local_ray, tmp_path, isolated_cache):
    """The budget counts the epochs run before an interrupt: resumed, the search stops at its
    budget in total, not after a fresh budget."""
    env = {**os.environ, "GENRETUNE_CACHE_DIR": str(isolated_cache)}
    exp = tmp_path / "bud"
    budget = 30  # far from spent when the signal lands (2 trials of 3 epochs)
    argv = ["search", *ARGS[:4], "--epochs", "3", "--patience", "3", "--scheduler", "fifo",
            "--num-samples", "50", "--budget-epochs", str(budget), "--max-concurrent", "2",
            "--progress-interval", "1000", "--name", "bud",
            "--storage-path", str(tmp_path)]  # fmt: skip
    stopped = interrupt_search(argv, env, lambda: len(_finished_at(exp, 3)) >= 2)
    assert stopped.returncode == 130, stopped.stdout[-3000:]
    spent_before = len(load_experiment(exp).history)
    assert 6 <= spent_before < budget

    assert main(["search", "--resume", "bud", "--storage-path", str(tmp_path)]) == 0
    history = load_experiment(exp).history
    assert not history.duplicated(["trial_id", "training_iteration"]).any()
    # At most one epoch over per trial running when the budget ran out (2 at once).
    assert budget <= len(history) <= budget + 2, len(history)
    assert (exp / "search_finished.json").is_file()
    # Every trial is settled in the study, those the budget stopped too (Ray ends them without
    # telling the searcher): COMPLETE with its last value (--cut-trials-as complete, the
    # default); drawn and never run, FAIL.
    study = optuna.load_study(study_name="bud", storage=f"sqlite:///{exp / 'optuna.db'}")
    assert [t.state.name for t in study.trials if t.state.name == "RUNNING"] == []
    by_id = {t.user_attrs["ray_trial_id"]: t for t in study.trials}
    for trial_id, rows in history.groupby("trial_id"):
        t, rows = by_id[trial_id], rows.sort_values("training_iteration")
        assert t.state.name == "COMPLETE", (trial_id, len(rows), t.state)
        assert t.value == pytest.approx(rows["best_tuned_val_f1"].iloc[-1])
    assert main(["search", "--resume", "bud", "--storage-path", str(tmp_path)]) == 0


def _finished_at(exp: Path, epochs: int) -> list[Path]:
    return [
        p
        for p in exp.glob("trial_*/progress.csv")
        if len(p.read_text().strip().splitlines()) - 1 >= epochs
    ]
