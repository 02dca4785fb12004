"""`--mlflow-uri`: one parent run per search, each trial a nested run, continued by --resume;
against a real MLflow tracking store (sqlite-backed)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from helpers import interrupt_search

from genretune.search.cli import main

# Starts Ray or trains real models: the full suite (make test), not the fast lane.
pytestmark = pytest.mark.slow

ARGS = ["--synthetic-scale", "0.02", "--base-channels", "4", "--epochs", "4", "--patience", "4",
        "--grace-period", "4", "--num-samples", "4", "--progress-interval", "1000"]  # fmt: skip


def _epochs_logged(exp: Path) -> int:
    return sum(
        max(0, len(p.read_text().splitlines()) - 1) for p in exp.glob("trial_*/progress.csv")
    )


def test_trials_are_nested_under_one_parent_run_across_a_resume(
    local_ray, tmp_path, isolated_cache
):
    mlflow = pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "GENRETUNE_CACHE_DIR": str(isolated_cache)}
    argv = ["search", *ARGS, "--name", "tracked", "--storage-path", str(tmp_path / "runs"),
            "--mlflow-uri", uri]  # fmt: skip
    exp = tmp_path / "runs" / "tracked"
    stopped = interrupt_search(argv, env, lambda: _epochs_logged(exp) >= 3, signal.SIGINT)
    assert stopped.returncode == 130, stopped.stdout[-3000:]

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("tracked")
    parents = client.search_runs([experiment.experiment_id], "tags.`genretune.role` = 'search'")
    assert len(parents) == 1 and parents[0].info.status == "KILLED"
    parent = parents[0]
    assert parent.data.params["num_samples"] == "4" and "space" in parent.data.params

    # --mlflow-uri is part of the experiment: --resume logs to the same store, same parent.
    assert main(["search", "--resume", "tracked", "--storage-path", str(tmp_path / "runs")]) == 0
    parents = client.search_runs([experiment.experiment_id], "tags.`genretune.role` = 'search'")
    assert [p.info.run_id for p in parents] == [parent.info.run_id]
    parent = client.get_run(parent.info.run_id)
    assert parent.info.status == "FINISHED"
    assert "best_tuned_val_f1" in parent.data.metrics

    trials = client.search_runs([experiment.experiment_id], "tags.`genretune.role` = 'trial'")
    ray_ids = {p.name.removeprefix("trial_") for p in exp.glob("trial_*") if p.is_dir()}
    assert {t.data.tags["ray_trial_id"] for t in trials} == ray_ids
    assert len(trials) == len(ray_ids) == 4, "one run per trial, also for trials resumed"
    best = max(
        client.get_metric_history(t.info.run_id, "best_tuned_val_f1")[-1].value for t in trials
    )
    assert parent.data.metrics["best_tuned_val_f1"] == pytest.approx(best)
    for run in trials:
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.info.status == "FINISHED"
        assert run.data.tags["end_reason"] in ("max_epochs", "patience", "asha")
        assert "lr" in run.data.params and "pos_weight_power" in run.data.params
        history = client.get_metric_history(run.info.run_id, "val_f1")
        steps = sorted(m.step for m in history)
        # Every epoch once, in order (an epoch rerun after the interruption is logged again
        # at the same step, which MLflow keeps as a second value of that step).
        assert sorted(set(steps)) == list(range(1, max(steps) + 1)), steps
    assert mlflow is not None
