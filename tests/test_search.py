"""`genretune search` on a real local Ray with tiny trials."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pandas as pd
import pytest
from helpers import search_settings
from ray import tune

from genretune.results.experiment import load_experiment
from genretune.results.experiment_dir import read_end_reasons
from genretune.search.launch import run_search
from genretune.search.monitoring import END_ASHA, END_MAX_EPOCHS, END_PATIENCE
from genretune.search.settings import TPE_STARTUP_TRIALS
from genretune.search.trainable import dataset_for_trials, train_trial

# Starts Ray or trains real models: the full suite (make test), not the fast lane.
pytestmark = pytest.mark.slow


def settings(tmp_path: Path, *extra: str):
    return search_settings(tmp_path, "--batch-size", "32", *extra)


def test_search_runs_asha_optuna_and_the_dir_reads_back(local_ray, tmp_path):
    s = settings(
        tmp_path,
        "--name",
        "basic",
        "--num-samples",
        "6",
        "--epochs",
        "6",
        "--patience",
        "6",
        "--grace-period",
        "1",
        "--reduction-factor",
        "2",
    )
    assert "base_channels" not in s.space, "a flag fixes a value and removes it from the space"
    results = run_search(s)
    assert len(results) == 6 and not results.errors
    exp = tmp_path / "basic"
    reasons = read_end_reasons(exp)
    assert len(reasons) == 6
    kinds = {r["end_reason"] for r in reasons.values()}
    assert END_ASHA in kinds, "ASHA stopped no trial early"
    assert END_MAX_EPOCHS in kinds
    for trial_id, info in reasons.items():
        if info["end_reason"] == END_ASHA:
            assert info["epochs"] < 6, trial_id
        # A finished trial keeps its newest two checkpoints (each holds the best weights),
        # the newest being its last epoch's.
        checkpoints = sorted(p.name for p in (exp / f"trial_{trial_id}").glob("checkpoint_*"))
        assert len(checkpoints) == min(2, info["epochs"]), (trial_id, checkpoints)
        assert int(checkpoints[-1].removeprefix("checkpoint_")) == info["epochs"] - 1

    # The baseline is the first configuration evaluated.
    study = optuna.load_study(study_name="basic", storage=f"sqlite:///{exp / 'optuna.db'}")
    assert len(study.trials) == 6
    first = min(study.trials, key=lambda t: t.number)
    assert first.params == s.baseline
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    # Optuna is told the best-so-far objective, never a stopped trial's worst moment.
    df = results.get_dataframe()
    for t in study.trials:
        assert t.value in set(df[s.metric])

    analysis = tune.ExperimentAnalysis(str(exp))
    assert len(analysis.trials) == 6
    restored = tune.Tuner.restore(str(exp), trainable=train_trial).get_results()
    assert len(restored) == 6
    history = pd.read_csv(next(exp.glob("trial_*/progress.csv")))
    for key in (
        "val_f1",
        "best_val_f1",
        "val_f1_kept",
        "val_precision",
        "val_recall",
        "val_hamming_loss",
        "val_jaccard",
        "val_avg_predictions",
        "val_pr_auc_macro",
        "n_genres",
        "n_train",
        "train_loss",
        "epoch_seconds",
        "tuned_threshold",
        "tuned_top_k",
        "tuned_val_f1",
        "node_id",
    ):
        assert key in history.columns, key
    # TensorBoard event files for `tensorboard --logdir runs/NAME`.
    assert len(list(exp.glob("trial_*/events.out.tfevents.*"))) == 6
    settings_file = json.loads((exp / "genretune_search.json").read_text())
    # The default objective: F1 at each epoch's validation-optimal decision rule.
    assert s.metric == "best_tuned_val_f1" and s.decision == "tuned"
    assert settings_file["metric"] == s.metric and settings_file["study_name"] == "basic"


def test_patience_stopper_fires_on_a_plateau(local_ray, tmp_path):
    # A learning rate this small cannot improve after the first epoch, at a fixed rule (the
    # tuned rule, a maximum over rules, can still move with batch norm's running statistics).
    s = settings(
        tmp_path,
        "--decision",
        "space",
        "--name",
        "plateau",
        "--num-samples",
        "2",
        "--epochs",
        "8",
        "--patience",
        "2",
        "--grace-period",
        "8",
        "--lr",
        "1e-9",
    )
    results = run_search(s)
    reasons = read_end_reasons(tmp_path / "plateau")
    assert {r["end_reason"] for r in reasons.values()} == {END_PATIENCE}
    for r in results:
        df = r.metrics_dataframe
        assert len(df) < 8
        assert df["epochs_since_best"].iloc[-1] == 2


def test_decision_tuned_searches_no_rule_and_optimises_tuned_f1(local_ray, tmp_path):
    mlruns = f"sqlite:///{tmp_path / 'mlflow.db'}"
    s = settings(
        tmp_path,
        "--name",
        "tuned",
        "--num-samples",
        "2",
        "--epochs",
        "2",
        "--decision",
        "tuned",
        "--mlflow-uri",
        mlruns,
    )
    assert "threshold" not in s.space and "top_k" not in s.space
    assert s.metric == "best_tuned_val_f1" and s.base.objective == "tuned_val_f1"
    results = run_search(s)
    df = results.get_dataframe()
    assert (df["best_tuned_val_f1"] >= df["tuned_val_f1"]).all()

    # --mlflow-uri: one MLflow run per trial nested under the search's run, read back with
    # MLflow's own client.
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=mlruns)
    exp = client.get_experiment_by_name("tuned")
    runs = client.search_runs([exp.experiment_id], "tags.`genretune.role` = 'trial'")
    assert len(runs) == 2
    assert {r.data.metrics["best_tuned_val_f1"] for r in runs} == set(df["best_tuned_val_f1"])
    (parent,) = client.search_runs([exp.experiment_id], "tags.`genretune.role` = 'search'")
    assert {r.data.tags["mlflow.parentRunId"] for r in runs} == {parent.info.run_id}
    assert parent.data.metrics["best_tuned_val_f1"] == df["best_tuned_val_f1"].max()


@pytest.mark.parametrize(
    "space, fragment",
    [
        ("lr: {type: float, low: 0.1, high: 0.01}", "low (0.1) > high (0.01)"),
        ("learning_rate: {type: float, low: 0.1, high: 1}", "learning_rate: unknown"),
        ("lr: {type: float, low: fast, high: 1}", "lr.low must be a finite number"),
        ("base_channels: {type: categorical, choices: []}", "choices must be a non-empty list"),
        ("lr: {type: gaussian}", "type must be float, int or categorical"),
        ("lr: {type: float, low: 0, high: 1, log: true}", "a log scale needs low > 0"),
        ("top_k: {type: categorical, choices: [0, 3]}", "top_k=0 is invalid"),
        ("[1, 2", "not valid YAML"),
        ("- lr", "must be a mapping"),
    ],
)
def test_bad_space_files_are_rejected_before_ray_starts(tmp_path, space, fragment, capsys):
    from genretune.search.cli import main

    path = tmp_path / "space.yaml"
    path.write_text(space)
    argv = ["search", "--space", str(path), "--storage-path", str(tmp_path / "runs")]
    code = main([*argv, "--decision", "space"])
    err = capsys.readouterr().err
    assert code == 2 and fragment in err and str(path) in err.replace("search space", str(path))
    assert not (tmp_path / "runs").exists()


def test_space_file_overrides_removes_and_fixes(tmp_path):
    path = tmp_path / "space.json"
    path.write_text(
        json.dumps(
            {
                "lr": {"type": "float", "low": 1e-3, "high": 2e-3, "log": True},
                "top_k": None,
                "weight_decay": 0.001,
                "dropout": {"type": "categorical", "choices": [0.2, 0.4]},
            }
        )
    )
    s = settings(tmp_path, "--space", str(path))
    assert s.space["lr"].low == 1e-3 and "top_k" not in s.space and "dropout" in s.space
    assert s.base.optim.weight_decay == 0.001
    # The baseline is the first trial, so it covers every searched key: 5e-4 lies outside the
    # user's lr range (its nearest value is used) and dropout takes the choice nearest the default.
    assert set(s.baseline) == set(s.space)
    assert s.baseline["lr"] == 1e-3 and s.baseline["dropout"] in (0.2, 0.4)


def test_a_space_file_searching_the_rule_needs_decision_space(tmp_path, capsys):
    from genretune.search.cli import main

    path = tmp_path / "space.yaml"
    path.write_text("threshold: {type: float, low: 0.3, high: 0.5, step: 0.1}\n")
    argv = ["search", "--space", str(path), "--storage-path", str(tmp_path / "runs")]
    assert main(argv) == 2
    assert "only with --decision space" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
    s = settings(tmp_path, "--space", str(path), "--decision", "space")
    assert s.space["threshold"].high == 0.5


def test_a_space_that_excludes_the_baseline_values_runs(local_ray, tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(
        "lr: {type: float, low: 1.0e-3, high: 2.0e-3}\n"
        "dropout: {type: categorical, choices: [0.1, 0.2]}\n"
    )
    s = settings(
        tmp_path, "--space", str(path), "--name", "narrow", "--num-samples", "2", "--epochs", "1"
    )
    results = run_search(s)
    assert len(results) == 2 and not results.errors
    assert any(all(r.config[k] == v for k, v in s.baseline.items()) for r in results)


def test_budget_random_sampler_and_fifo_scheduler(local_ray, tmp_path, capsys):
    """The baselines of the efficiency benchmark: random sampling, no ASHA, no patience stop,
    and a search that ends on a total trial-epoch budget (spread thin: a note says so)."""
    s = settings(
        tmp_path,
        "--name",
        "budget",
        "--num-samples",
        "50",
        "--epochs",
        "3",
        "--patience",
        "3",
        "--sampler",
        "random",
        "--scheduler",
        "fifo",
        "--budget-epochs",
        "7",
        "--max-concurrent",
        "2",
    )
    results = run_search(s)
    note = "note: --budget-epochs 7 over 2 trials at once is 3.5 epochs each, under 3 whole"
    assert note in capsys.readouterr().err
    df = results.get_dataframe()
    history = load_experiment(tmp_path / "budget").history
    spent = len(history)
    # It stops at 7 trial-epochs, overshooting by at most one epoch per running trial.
    assert 7 <= spent <= 9, history[["trial_id", "training_iteration"]]
    assert len(df) < 50
    reasons = read_end_reasons(tmp_path / "budget")
    assert set(reasons) == set(df["trial_id"]) | {
        p.name.removeprefix("trial_") for p in (tmp_path / "budget").glob("trial_*") if p.is_dir()
    }
    assert {r["end_reason"] for r in reasons.values()} <= {END_MAX_EPOCHS, "budget"}
    assert "budget" in {r["end_reason"] for r in reasons.values()} or spent % 3 == 0
    saved = json.loads((tmp_path / "budget" / "genretune_search.json").read_text())
    assert (saved["sampler"], saved["scheduler"], saved["budget_epochs"]) == ("random", "fifo", 7)
    study = optuna.load_study(study_name="budget", storage=s.optuna_url())
    assert study.trials[0].params == s.baseline
    assert len({t.params["lr"] for t in study.trials}) == len(study.trials)


def test_no_baseline_leaves_every_trial_to_the_sampler(local_ray, tmp_path):
    """--no-baseline (alias --no-seed-point): no trial is the baseline (a plain random
    search baseline), and the choice is saved for --resume."""
    from genretune.data import load_dataset
    from genretune.search.checks import fit_space_to_data
    from genretune.search.cli.search_summary import summary

    default = settings(tmp_path)
    hand_tuned = fit_space_to_data(default, load_dataset(default.base.data)).baseline
    s = settings(
        tmp_path,
        "--name",
        "noseed",
        "--no-seed-point",
        "--sampler",
        "random",
        "--num-samples",
        "3",
        "--epochs",
        "1",
        "--max-concurrent",
        "2",
    )
    assert s.baseline == {} and hand_tuned
    results = run_search(s)
    assert len(results) == 3 and not results.errors
    saved = json.loads((tmp_path / "noseed" / "genretune_search.json").read_text())
    assert saved["baseline"] == {}
    study = optuna.load_study(study_name="noseed", storage=s.optuna_url())
    assert len(study.trials) == 3
    assert all(set(t.params) == set(s.space) for t in study.trials)
    assert all(t.params != hand_tuned for t in study.trials)
    assert not any("hand-tuned" in line for line in summary(s, results))


def test_tpe_proposes_after_its_start_up_trials(local_ray, tmp_path):
    """--tpe-startup N: TPE (and --sampler gp) samples its first N trials (the baseline counts)
    exactly as the random sampler with the same seed does, then proposes from what it has seen."""

    def sampled(name: str, *extra: str) -> list[dict]:
        s = search_settings(
            tmp_path,
            "--name",
            name,
            "--num-samples",
            "5",
            "--epochs",
            "1",
            "--patience",
            "1",
            "--grace-period",
            "1",
            "--max-concurrent",
            "1",
            "--seed",
            "5",
            *extra,
        )
        results = run_search(s)
        assert len(results) == 5 and not results.errors
        saved = json.loads((tmp_path / name / "genretune_search.json").read_text())
        assert saved["tpe_startup_trials"] == s.tpe_startup_trials
        study = optuna.load_study(study_name=name, storage=s.optuna_url())
        return [t.params for t in sorted(study.trials, key=lambda t: t.number)]

    random = sampled("random", "--sampler", "random")
    tpe = sampled("tpe3", "--tpe-startup", "3")
    assert tpe[:3] == random[:3], "start-up trials are the random sampler's"
    assert tpe[3:] != random[3:], "then TPE proposes"
    gp = sampled("gp3", "--sampler", "gp", "--tpe-startup", "3")
    assert gp[:3] == random[:3], "gp's start-up trials are the random sampler's too"
    assert gp[3:] != random[3:] and gp[3:] != tpe[3:], "then the Gaussian process proposes"
    assert search_settings(tmp_path).tpe_startup_trials == TPE_STARTUP_TRIALS == 3


def test_trials_share_one_zero_copy_feature_array(local_ray):
    """The features reach trial workers through the object store without a private copy: a
    memory-mapped array would be pickled in-band and copied into every worker."""
    import ray

    from genretune.data import DataConfig

    dataset = dataset_for_trials(DataConfig(synthetic_scale=0.02), on_workers=False)

    @ray.remote
    def features_flags(d):
        return d.features.flags.writeable, d.features.nbytes

    writeable, nbytes = ray.get(features_flags.remote(ray.put(dataset)))
    assert nbytes == dataset.features.nbytes
    assert not writeable, "read-only = mapped from the object store, not copied"


def test_trials_at_once_and_when_a_budget_is_spread_too_thin(local_ray, tmp_path, capsys):
    from genretune.search.ray_cluster import trials_at_once
    from genretune.search.settings import Resources
    from genretune.search.start_lines import thin_budget_note

    # The session's local Ray has 2 CPUs and no GPU.
    assert trials_at_once(Resources(1, 0, None)) == 2
    assert trials_at_once(Resources(0.5, 0, None)) == 4
    assert trials_at_once(Resources(0.5, 0, 3)) == 3
    assert trials_at_once(Resources(2, 0, None)) == 1
    assert trials_at_once(Resources(1, 0.5, None)) == 0
    # Under 3 whole trials of epochs per trial running at once: a note, else none.
    note = thin_budget_note(90, 32, 15)
    assert note.startswith("note: --budget-epochs 90 over 32 trials at once is 2.8 epochs each")
    assert "--ramp-up" in note and "\n" not in note
    assert thin_budget_note(1439, 32, 15) and not thin_budget_note(1440, 32, 15)
    assert not thin_budget_note(90, 2, 15) and thin_budget_note(89, 2, 15)
    assert not thin_budget_note(None, 32, 15) and not thin_budget_note(5, 1, 15)
    # A search that runs one trial at a time on this budget says nothing.
    s = settings(
        tmp_path,
        *("--name", "one", "--num-samples", "1", "--epochs", "1", "--budget-epochs", "1"),
    )
    capsys.readouterr()
    assert run_search(s) is not None
    assert "note: --budget-epochs" not in capsys.readouterr().err


def test_a_search_its_budget_ended_summarises_and_resume_leaves_it_alone(
    local_ray, tmp_path, capsys
):
    """A budget ends a search with a trial started that never reported (no config, no
    metrics: Ray warns it cannot fetch them): the summary skips it, and the search is finished,
    so --resume has nothing to do."""
    from helpers import TINY_SEARCH

    from genretune.search.cli import main

    exp = tmp_path / "bud"
    argv = ["search", *TINY_SEARCH, "--storage-path", str(tmp_path), "--name", "bud",
            "--epochs", "4", "--patience", "4", "--num-samples", "6", "--budget-epochs", "5",
            "--progress-interval", "1000"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr()
    assert "best trial" in out.out and f"genretune export bud --storage-path {tmp_path}" in out.out
    assert "search finished" in out.err
    # What the search does, said before it starts: --epochs 4 and --patience 4 make the
    # grace period 2 (the demo's rule: the smaller of patience and half the epochs).
    assert "search bud: 6 trial(s), at most 5 trial-epochs of up to 4 epochs; TPE after " in out.err
    assert "ASHA from epoch 2 (reduction factor 3, late cut), patience 4" in out.err
    assert json.loads((exp / "search_finished.json").read_text())["trials"] >= 2
    before = {p: p.stat().st_mtime_ns for p in exp.rglob("*")}
    assert main(["search", "--resume", "bud", "--storage-path", str(tmp_path)]) == 0
    assert "experiment bud already finished: nothing to resume" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in exp.rglob("*")} == before
