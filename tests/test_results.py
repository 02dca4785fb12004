"""`results`, `export` and retraining from an exported config, on a real tiny experiment."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from genretune.search.cli import main
from genretune.search.cli.search import settings_from_argv
from genretune.search.launch import run_search

# Starts Ray or trains real models: the full suite (make test), not the fast lane.
pytestmark = pytest.mark.slow

EPOCHS = 4


@pytest.fixture(scope="module")
def experiment(local_ray, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    argv = [
        "search",
        "--synthetic-scale",
        "0.02",
        "--base-channels",
        "4",
        "--epochs",
        str(EPOCHS),
        "--patience",
        "4",
        "--grace-period",
        "2",
        "--reduction-factor",
        "2",
        "--num-samples",
        "5",
        "--name",
        "exp",
        "--storage-path",
        str(root),
        "--progress-interval",
        "1000",
        # Optuna searches the decision rule: the objective is best_val_f1, as the tests read.
        "--decision",
        "space",
    ]
    run_search(settings_from_argv(argv[1:]))
    return root / "exp"


def test_load_experiment_trials_and_history(experiment):
    from genretune.results import load_experiment

    exp = load_experiment(experiment)
    t = exp.trials
    assert len(t) == 5 and set(t["status"]) == {"TERMINATED"}
    for col in (
        "trial_id",
        "end_reason",
        "best_val_f1",
        "last_val_f1",
        "epochs",
        "wall_time_s",
        "hostname",
        "node_ip",
        "lr",
        "min_samples_per_genre",
        "top_k",
        "best_tuned_val_f1",
    ):
        assert col in t, col
    assert list(t["best_val_f1"]) == sorted(t["best_val_f1"], reverse=True), "best first"
    assert len(exp.history) == t["epochs"].sum()
    assert exp.best()["trial_id"] == t.iloc[0]["trial_id"]
    # Another metric is ranked by each trial's extreme over its epochs (the history's), not by
    # its value at the trial's best epoch (the table's best_ column).
    lowest = exp.history.groupby("trial_id")["val_hamming_loss"].min()
    assert lowest[exp.best("val_hamming_loss", "min")["trial_id"]] == lowest.min()
    # A loss is better low without being told: export --metric val_hamming_loss picks the
    # lowest, not the search's max.
    assert (
        exp.best("val_hamming_loss")["trial_id"] == exp.best("val_hamming_loss", "min")["trial_id"]
    )
    # Asked for the other direction, the extreme comes from the history, not the table's best.
    # (Two trials may tie at the lowest value, so the check is on the value, not the id.)
    worst = exp.history.groupby("trial_id")["val_f1"].min()
    assert worst[exp.best("val_f1", "min")["trial_id"]] == worst.min()
    highest = exp.history.groupby("trial_id")["val_hamming_loss"].max()
    if lowest.nunique() > 1 and highest.idxmax() != lowest.idxmin():
        assert (
            exp.best("val_hamming_loss")["trial_id"]
            != exp.best("val_hamming_loss", "max")["trial_id"]
        )


def test_a_copied_experiment_reads_in_another_process_without_ray(experiment, tmp_path):
    copy = tmp_path / "copied"
    shutil.copytree(experiment, copy)
    code = (
        "import sys, ray\n"
        "from genretune.results.experiment import load_experiment\n"
        f"e = load_experiment({str(copy)!r})\n"
        "assert not ray.is_initialized()\n"
        "print(len(e.trials), len(e.history))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    n_trials, n_rows = map(int, res.stdout.split())
    assert n_trials == 5 and n_rows > 5


def test_results_command_table_curve_and_exports(experiment, tmp_path, capsys):
    root, name = str(experiment.parent), experiment.name
    assert main(["results", name, "--storage-path", root]) == 0
    out = capsys.readouterr().out
    assert "5 trials" in out and "end_reason" in out and "best_val_f1" in out
    assert (
        main(
            [
                "results",
                str(experiment),
                "--filter",
                "epochs >= 2",
                "--sort",
                "lr",
                "--columns",
                "trial_id,lr,epochs",
                "--top",
                "3",
                "--format",
                "csv",
            ]
        )
        == 0
    )
    # (An id may be all digits: read as text.)
    df = pd.read_csv(pd.io.common.StringIO(capsys.readouterr().out), dtype={"trial_id": str})
    assert list(df.columns) == ["trial_id", "lr", "epochs"] and len(df) <= 3
    assert list(df["lr"]) == sorted(df["lr"], reverse=True)
    trial_id = df["trial_id"][0]
    assert main(["results", str(experiment), "--trial", trial_id, "--format", "csv"]) == 0
    curve = pd.read_csv(pd.io.common.StringIO(capsys.readouterr().out))
    assert list(curve["training_iteration"]) == list(range(1, len(curve) + 1))
    for fmt in ("json", "parquet", "csv"):
        out_file = tmp_path / f"trials.{fmt}"
        assert main(["results", str(experiment), "--format", fmt, "--output", str(out_file)]) == 0
        back = {"json": pd.read_json, "parquet": pd.read_parquet, "csv": pd.read_csv}[fmt](out_file)
        assert len(back) == 5 and "best_val_f1" in back
    assert main(["results", str(experiment), "--format", "csv", "--output", str(out_file)]) == 2
    assert "already exists" in capsys.readouterr().err
    # The format follows --output's extension; a column named twice is shown once.
    out_json = tmp_path / "picked.json"
    argv = ["results", str(experiment), "--columns", "trial_id,lr,lr", "--output", str(out_json)]
    assert main(argv) == 0
    assert f"wrote {out_json} (json, 5 rows)" in capsys.readouterr().err
    assert list(pd.read_json(out_json).columns) == ["trial_id", "lr"]
    # A filter nothing matches says so, in words.
    assert main(["results", str(experiment), "--filter", "lr > 1"]) == 0
    out = capsys.readouterr().out
    assert "no trial matches --filter 'lr > 1'" in out and "Empty DataFrame" not in out
    # Plots already in --plots are replaced only with --force, as -o/--output files are.
    plots = tmp_path / "plots"
    assert main(["results", str(experiment), "--plots", str(plots)]) == 0
    written = {p: p.stat().st_mtime_ns for p in plots.iterdir()}
    capsys.readouterr()
    assert main(["results", str(experiment), "--plots", str(plots)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "search_progress.png" in err[0] and "--force" in err[0]
    assert {p: p.stat().st_mtime_ns for p in plots.iterdir()} == written
    assert main(["results", str(experiment), "--plots", str(plots), "--force"]) == 0


def test_plots_are_written(experiment, tmp_path):
    from genretune.results import load_experiment
    from genretune.results.plots import write_plots

    paths = write_plots(load_experiment(experiment), tmp_path / "plots")
    names = {p.name for p in paths}
    assert {
        "search_progress.png",
        "learning_curves.png",
        "params_vs_objective.png",
        "best_trial_decision_rules.png",
        "param_importances.png",
    } <= names
    for p in paths:
        assert p.read_bytes()[:4] == b"\x89PNG" and p.stat().st_size > 10_000


def test_export_then_retrain_reproduces_the_trial(experiment, tmp_path, capsys):
    from genretune.results import load_experiment

    exp = load_experiment(experiment)
    full = exp.trials[exp.trials["epochs"] == EPOCHS].iloc[0]
    best_json = tmp_path / "best.json"
    model_dir = tmp_path / "best_model"
    assert (
        main(
            [
                "export",
                str(experiment),
                "--trial",
                full["trial_id"],
                "-o",
                str(best_json),
                "--with-checkpoint",
                str(model_dir),
            ]
        )
        == 0
    )
    payload = json.loads(best_json.read_text())
    assert payload["provenance"]["trial_id"] == full["trial_id"]
    assert payload["config"]["lr"] == full["lr"]
    assert {"torch", "ray", "optuna"} <= set(payload["provenance"]["versions"])

    # The export carries the trial's device and threads: the plain command repeats the trial.
    assert payload["runtime"] == {"device": "cpu", "threads": 1}
    capsys.readouterr()
    out = tmp_path / "retrained"
    argv = ["train", "--config", str(best_json), "--output-dir", str(out), "--no-progress"]
    assert main(argv) == 0
    assert "note:" not in capsys.readouterr().err
    (run_dir,) = list(out.iterdir())
    retrained = pd.read_csv(run_dir / "history.csv")
    trial = exp.history[exp.history["trial_id"] == full["trial_id"]]
    # Same seed, same data, CPU: the retrained run repeats the trial epoch for epoch.
    assert list(retrained["val_f1"]) == pytest.approx(list(trial["val_f1"]), abs=1e-9)
    assert retrained["val_f1"].max() == pytest.approx(full["best_val_f1"], abs=1e-9)

    # Another thread count cannot repeat it, and says so in one line.
    other = tmp_path / "other"
    argv = ["train", "--config", str(best_json), "--output-dir", str(other), "--no-progress"]
    assert main([*argv, "--threads", "2", "--epochs", "1"]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note:")]
    assert notes == [
        "note: this run will not repeat the trial epoch for epoch (it ran with 1 torch "
        "thread(s), this run with 2)"
    ]

    # The exported model dir is a model dir, as `genretune train` writes one: predict and
    # load_model read it, with the trial's genres and its best epoch's rule and weights.
    import genretune
    from genretune.data import load_dataset
    from genretune.model.config import config_from_flat
    from genretune.results.checkpoints import latest_state

    card = json.loads((model_dir / "config.json").read_text())
    assert card["format"] == "genretune-model"
    assert card["provenance"]["trial_id"] == full["trial_id"] and card["runtime"]["threads"] == 1
    assert len(card["kept_genres"]) == trial["n_genres"].iloc[-1]
    assert card["decision_rule"]["epoch"] == payload["provenance"]["best_epoch"]
    model = genretune.load_model(model_dir)
    weights = latest_state(experiment / f"trial_{full['trial_id']}")["best_model"]
    assert all((model.network.state_dict()[k] == v).all() for k, v in weights.items())
    features = load_dataset(config_from_flat(card["config"]).data).features[:7]
    assert model.predict_proba(features).shape == (7, len(card["kept_genres"]))
    # ... and a model card is a config `genretune train --config` reads.
    again = tmp_path / "from_card"
    argv = ["train", "--config", str(model_dir / "config.json"), "--output-dir", str(again)]
    assert main([*argv, "--no-progress", "--epochs", "1"]) == 0
    (run_dir,) = list(again.iterdir())
    first = pd.read_csv(run_dir / "history.csv")["val_f1"].iloc[0]
    assert first == pytest.approx(trial["val_f1"].iloc[0], abs=1e-9)

    # The exported model dir is accepted by tune-threshold.
    assert main(["tune-threshold", "--model-dir", str(model_dir)]) == 0
    assert (model_dir / "threshold_tuning_results.json").is_file()
    capsys.readouterr()


def test_export_refuses_to_overwrite(experiment, tmp_path, capsys):
    target = tmp_path / "best.json"
    target.write_text("{}")
    assert main(["export", str(experiment), "-o", str(target)]) == 2
    assert "already exists (use --force" in capsys.readouterr().err
    assert target.read_text() == "{}"
    assert main(["export", str(experiment), "-o", str(target), "--force"]) == 0
    assert "config" in json.loads(target.read_text())


def test_a_cut_last_line_keeps_the_complete_rows_and_the_best_trial(experiment, tmp_path):
    """A result.json whose last line is cut (a search still writing, or killed): the trial keeps
    its complete rows, one warning names the file, and export picks the same best trial."""
    from genretune.results.experiment import load_experiment

    copy = tmp_path / "cut"
    shutil.copytree(experiment, copy)
    before = load_experiment(copy)
    best = before.best()
    result = copy / f"trial_{best['trial_id']}" / "result.json"
    lines = result.read_text().splitlines(keepends=True)
    assert len(lines) >= 2
    # The best trial's best epoch stays complete; cut a later line, or add a cut one.
    best_epoch = int(
        before.history[before.history["trial_id"] == best["trial_id"]]
        .sort_values("best_val_f1")
        .iloc[-1]["training_iteration"]
    )
    if best_epoch < len(lines):
        kept, cut = lines[: len(lines) - 1], lines[-1][: len(lines[-1]) // 2]
    else:
        kept, cut = lines, lines[-1][:40]
    result.write_text("".join(kept) + cut)
    genretune = str(Path(sys.executable).with_name("genretune"))
    res = subprocess.run(
        [genretune, "export", str(copy), "-o", str(tmp_path / "best.json")],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    warnings = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(warnings) == 1 and "result.json" in warnings[0] and "ignored 1" in warnings[0]
    exported = json.loads((tmp_path / "best.json").read_text())
    assert exported["provenance"]["trial_id"] == best["trial_id"]
    after = load_experiment(copy)
    row = after.trials[after.trials["trial_id"] == best["trial_id"]].iloc[0]
    assert row["epochs"] == len(kept)
    assert row["best_val_f1"] == best["best_val_f1"]


def test_results_into_a_closed_pipe_stops_quietly(experiment):
    """`genretune results NAME | head -1`: the reader is gone before the table is written."""
    genretune = str(Path(sys.executable).with_name("genretune"))
    res = subprocess.run(
        ["bash", "-c", f"'{genretune}' results '{experiment}' | true; echo ${{PIPESTATUS[0]}}"],
        capture_output=True,
        text=True,
    )
    assert res.stderr == "", res.stderr
    assert res.stdout.strip() == "141"


def test_export_before_any_trial_reported_says_so_in_one_line(experiment, tmp_path):
    """As early in a live search: trials exist, none has written a result yet."""
    copy = tmp_path / "live"
    shutil.copytree(experiment, copy)
    for pattern in ("trial_*/result.json", "trial_*/progress.csv"):
        for path in copy.glob(pattern):
            path.unlink()
    genretune = str(Path(sys.executable).with_name("genretune"))
    res = subprocess.run(
        [genretune, "export", str(copy), "-o", str(tmp_path / "best.json")],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "no trial has reported best_val_f1" in lines[0], res.stderr
    assert "--metric" not in lines[0]
    assert not (tmp_path / "best.json").exists()


def test_rows_of_rerun_epochs_are_kept_once_the_reruns(experiment, tmp_path):
    """A trial restarted from an older checkpoint logs its rerun epochs a second time; after a
    search the history holds each epoch once, the rerun's row, for Ray's own reader too."""
    from ray.tune import ExperimentAnalysis

    from genretune.search.experiment_writer import drop_rerun_rows

    copy = tmp_path / "rerun"
    shutil.copytree(experiment, copy)
    full = [
        p.parent for p in copy.glob("trial_*/progress.csv") if len(pd.read_csv(p)) >= 3
    ]  # fmt: skip
    trial_dir = sorted(full)[0]
    others = {p: p.read_bytes() for p in copy.glob("trial_*/*.*") if p.parent != trial_dir}
    progress, result = trial_dir / "progress.csv", trial_dir / "result.json"
    lines = progress.read_text().splitlines(keepends=True)
    json_lines = result.read_text().splitlines(keepends=True)
    # What Ray appends after a restart from the epoch-1 checkpoint: epochs 2.. again, with
    # other values (a different wall clock).
    rerun = pd.read_csv(progress).iloc[1:].assign(time_this_iter_s=12345.0)
    progress.write_text("".join(lines) + rerun.to_csv(header=False, index=False))
    rerun_json = []
    for line in json_lines[1:]:
        row = json.loads(line)
        row["time_this_iter_s"] = 12345.0
        rerun_json.append(json.dumps(row) + "\n")
    result.write_text("".join(json_lines + rerun_json))

    assert drop_rerun_rows(copy) == {trial_dir.name: len(lines) - 2}
    history = pd.read_csv(progress)
    assert list(history["training_iteration"]) == list(range(1, len(lines)))
    assert list(history["time_this_iter_s"].iloc[1:]) == [12345.0] * (len(lines) - 2)
    rows = [json.loads(line) for line in result.read_text().splitlines()]
    assert [r["training_iteration"] for r in rows] == list(range(1, len(lines)))
    assert all(r["time_this_iter_s"] == 12345.0 for r in rows[1:])
    frame = ExperimentAnalysis(str(copy)).trial_dataframes[trial_dir.name.removeprefix("trial_")]
    assert list(frame["training_iteration"]) == list(range(1, len(lines)))
    assert {p: p.read_bytes() for p in others} == others
    assert drop_rerun_rows(copy) == {}


def test_dashboard_serves_the_study_to_a_real_browser_and_stops_on_ctrl_c(experiment, tmp_path):
    """`genretune dashboard` on the experiment: headless Chromium renders its trial list (the
    screenshot is kept in test-artefacts/), and Ctrl-C stops the server."""
    import signal
    import socket
    import urllib.request

    import optuna
    from helpers import ARTEFACTS, headless_chromium, visible_text

    study = optuna.load_study(study_name="exp", storage=f"sqlite:///{experiment}/optuna.db")
    genretune = str(Path(sys.executable).with_name("genretune"))
    server = subprocess.Popen(
        [genretune, "dashboard", "exp", "--storage-path", str(experiment.parent), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout.readline().startswith("optuna-dashboard: study 'exp'")
        url = server.stdout.readline().strip()
        assert url.startswith("http://localhost:") and url.endswith("/dashboard/studies/1"), url
        # The server answers its API before any browser is involved.
        with urllib.request.urlopen(url, timeout=30) as page:
            assert page.status == 200

        dom = headless_chromium(f"{url}/trials", tmp_path / "profile", "--dump-dom")
        text = visible_text(dom.stdout)
        assert f"{len(study.trials)} Trials" in text, text[:2000]
        for trial in study.trials:
            assert f"Trial {trial.number} Complete" in text, trial.number
        first = study.trials[0]
        for name, value in first.params.items():
            assert f"{name} {value}" in text, (name, value, text[:2000])

        ARTEFACTS.mkdir(exist_ok=True)
        shot = ARTEFACTS / "dashboard-trials.png"
        shot.unlink(missing_ok=True)
        headless_chromium(f"{url}/trials", tmp_path / "profile", f"--screenshot={shot}")
        assert shot.stat().st_size > 10_000, "an empty screenshot"
        print(f"screenshot: {shot}")

        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=30) == 0
        assert "optuna-dashboard stopped" in server.stderr.read()
        port = int(url.split(":")[2].split("/")[0])
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, "still listening"
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def test_best_values_are_the_best_epochs_and_export_carries_its_rule(experiment, tmp_path):
    """Each best_ column is the value of the trial's best epoch (the one whose weights export
    and retrain use: the last that improved its objective), not a maximum over epochs; the
    export's provenance names that epoch and its decision rule."""
    from genretune.results import load_experiment

    exp = load_experiment(experiment)
    for _, trial in exp.trials.iterrows():
        curve = exp.history[exp.history["trial_id"] == trial["trial_id"]]
        improved = curve[curve["epochs_since_best"] == 0]["training_iteration"]
        assert trial["best_epoch"] == improved.iloc[-1]
        at_best = curve[curve["training_iteration"] == trial["best_epoch"]].iloc[0]
        for metric in ("val_f1", "val_precision", "val_recall", "tuned_threshold", "train_loss"):
            assert trial[f"best_{metric}"] == at_best[metric], (trial["trial_id"], metric)
    out = tmp_path / "best.json"
    assert main(["export", str(experiment), "-o", str(out)]) == 0
    provenance = json.loads(out.read_text())["provenance"]
    best = exp.best()
    assert provenance["best_epoch"] == best["best_epoch"]
    rule = provenance["best_epoch_decision_rule"]
    # This experiment searched the rule (--decision space): the trial's own threshold / top-K.
    assert (rule["threshold"], rule["top_k"]) == (best["threshold"], _none(best["top_k"]))


def _none(value):
    return None if pd.isna(value) else int(value)


def test_the_python_example_of_docs_search_runs(experiment):
    from helpers import DOCS, doc_code_blocks, run_doc_python

    (doc,) = [p for p in DOCS if p.name == "search.md"]
    (code,) = doc_code_blocks(doc, ("python",))
    check = "\nassert len(exp.trials) == 5 and exp.best()['trial_id'] in set(exp.trials.trial_id)\n"
    run_doc_python(code + check, experiment.parent, {'"demo"': '"exp"', '"runs"': '"."'})
