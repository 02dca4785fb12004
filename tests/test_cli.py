"""`genretune data stats`, `train` and `tune-threshold` through the real entry point."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import default_sigint

from genretune.model.network import GenreCNN
from genretune.search.cli import main

GENRETUNE = str(Path(sys.executable).with_name("genretune"))
TINY = [
    "--synthetic-scale",
    "0.02",
    "--epochs",
    "2",
    "--base-channels",
    "4",
    "--no-progress",
    "--device",
    "cpu",
    "--threads",
    "1",
]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([GENRETUNE, *args], capture_output=True, text=True, timeout=600)


@pytest.mark.slow  # full-scale synthetic data: over 10 s, the full suite's
def test_data_stats_reproduces_the_seed_tables():
    out = run_cli("data", "stats", "--data", "synthetic", "--synthetic-scale", "1.0")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    for fragment in [
        "70 genres, 38,801 samples",
        "6,316 samples (Field Recordings)",
        "50 samples",
        "Imbalance:    126.3x",
        "<500 samples: 51/70",
        "<100 samples: 19/70",
    ]:
        assert fragment in text, fragment
    out = run_cli("data", "stats", "--synthetic-scale", "1.0", "--min-samples-per-genre", "300")
    assert out.returncode == 0, out.stderr
    assert "24 genres, 46 dropped" in out.stdout
    assert "Total: 32,856 samples" in out.stdout
    assert "Imbalance: 20.4x" in out.stdout


def _only_run_dir(root: Path) -> Path:
    (run_dir,) = [p for p in root.iterdir() if p.is_dir()]
    return run_dir


def test_train_writes_a_complete_model_dir(tmp_path, capsys):
    code = main(
        [
            "train",
            *TINY,
            "--output-dir",
            str(tmp_path),
            "--experiment-name",
            "tiny",
            "--min-samples-per-genre",
            "8",
            "--debug",
        ]
    )
    assert code == 0
    err = capsys.readouterr().err
    assert "Viable genres (>= 8 samples)" in err and "largest pos_weight" in err
    run_dir = _only_run_dir(tmp_path)
    assert run_dir.name.startswith("tiny_")
    names = {p.name for p in run_dir.iterdir()}
    assert {
        "model.pt",
        "config.json",
        "history.csv",
        "metrics.json",
        "predictions_val.npz",
        "predictions_test.npz",
        "threshold_tuning_results.json",
        "threshold_tuning_plots.png",
    } <= names
    rows = list(csv.DictReader((run_dir / "history.csv").open()))
    assert len(rows) == 2 and {"val_f1", "best_val_f1", "tuned_val_f1", "val_f1_kept"} <= set(
        rows[0]
    )
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"val", "test", "val_tuned_rule", "test_tuned_rule", "decision_rule"} <= set(metrics)
    assert "test_f1" in metrics["test"] and "test_f1_kept" in metrics["test"]
    # The weights rebuild the model from config.json alone and reproduce the saved predictions.
    meta = json.loads((run_dir / "config.json").read_text())
    model = GenreCNN(len(meta["kept_idx"]), meta["config"]["base_channels"])
    model.load_state_dict(torch.load(run_dir / "model.pt", weights_only=True))
    assert meta["config"]["min_samples_per_genre"] == 8


def test_config_file_and_explicit_flags(tmp_path):
    cfg = tmp_path / "best.json"
    cfg.write_text(
        json.dumps(
            {
                "config": {
                    "synthetic_scale": 0.02,
                    "epochs": 1,
                    "base_channels": 4,
                    "lr": 0.002,
                    "top_k": 3,
                },
                "provenance": {"x": 1},
            }
        )
    )
    out = tmp_path / "out"
    code = main(
        [
            "train",
            "--config",
            str(cfg),
            "--lr",
            "0.001",
            "--top-k",
            "none",
            "--output-dir",
            str(out),
            "--no-progress",
            "--threads",
            "1",
        ]
    )
    assert code == 0
    written = json.loads((_only_run_dir(out) / "config.json").read_text())["config"]
    assert written["lr"] == 0.001 and written["top_k"] is None and written["epochs"] == 1


def test_tune_threshold_from_model_dir_and_predictions(tmp_path, capsys):
    assert main(["train", *TINY, "--output-dir", str(tmp_path / "m")]) == 0
    run_dir = _only_run_dir(tmp_path / "m")
    before = json.loads((run_dir / "threshold_tuning_results.json").read_text())
    (run_dir / "threshold_tuning_results.json").unlink()
    assert main(["tune-threshold", "--model-dir", str(run_dir)]) == 0
    assert json.loads((run_dir / "threshold_tuning_results.json").read_text()) == before
    report = json.loads((run_dir / "threshold_tuning_test_report.json").read_text())
    assert set(report) >= {"threshold_only", "overall"}

    # Without saved predictions the model dir is re-evaluated from its weights and config.
    for f in run_dir.glob("predictions_*.npz"):
        f.rename(tmp_path / f.name)
    out2 = tmp_path / "retuned"
    assert main(["tune-threshold", "--model-dir", str(run_dir), "--output-dir", str(out2)]) == 0
    again = json.loads((out2 / "threshold_tuning_results.json").read_text())
    assert again["best"]["overall"]["f1"] == pytest.approx(
        before["best"]["overall"]["f1"], abs=1e-6
    )

    npz = tmp_path / "predictions_val.npz"
    assert (
        main(["tune-threshold", "--predictions", str(npz), "--output-dir", str(tmp_path / "p")])
        == 0
    )
    sweep = json.loads((tmp_path / "p" / "threshold_tuning_results.json").read_text())
    assert sweep["best"]["overall"]["f1"] == pytest.approx(before["best"]["overall"]["f1"])
    assert "overall" in capsys.readouterr().out

    # --load-tuning-results makes the sweep's best rule the run's decision rule.
    out3 = tmp_path / "m3"
    assert (
        main(
            [
                "train",
                *TINY,
                "--output-dir",
                str(out3),
                "--load-tuning-results",
                str(tmp_path / "p" / "threshold_tuning_results.json"),
            ]
        )
        == 0
    )
    best = sweep["best"]["overall"]
    rule = json.loads((_only_run_dir(out3) / "metrics.json").read_text())["decision_rule"]
    assert rule == {"threshold": best.get("threshold"), "top_k": best.get("top_k")}


def test_train_on_a_feature_dir(tmp_path, feature_dir):
    code = main(
        [
            "train",
            "--data",
            str(feature_dir),
            "--epochs",
            "2",
            "--base-channels",
            "4",
            "--output-dir",
            str(tmp_path / "o"),
            "--no-progress",
            "--threads",
            "1",
        ]
    )
    assert code == 0
    metrics = json.loads((_only_run_dir(tmp_path / "o") / "metrics.json").read_text())
    assert 0 <= metrics["test"]["test_f1"] <= 1


@pytest.mark.slow  # a separate training process, interrupted
def test_ctrl_c_during_train_leaves_no_model_dir(tmp_path, isolated_cache):
    import os
    import signal
    import time

    genretune = str(Path(sys.executable).with_name("genretune"))
    out = tmp_path / "models"
    argv = [genretune, "train", "--synthetic-scale", "0.02", "--base-channels", "4"]
    argv += ["--epochs", "500", "--patience", "500", "--output-dir", str(out), "--no-progress"]
    env = {**os.environ, "GENRETUNE_CACHE_DIR": str(isolated_cache)}
    # As from a terminal: a shell that starts a job in the background has it ignore SIGINT.
    proc = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True,
                            preexec_fn=default_sigint)  # fmt: skip
    # Training has begun once the run announces it.
    deadline = time.monotonic() + 120
    line = ""
    while "Training on" not in line:
        line = proc.stderr.readline()
        assert line or proc.poll() is None, "train ended before training"
        assert time.monotonic() < deadline
    time.sleep(2)
    proc.send_signal(signal.SIGINT)
    rest = proc.stderr.read()
    assert proc.wait(timeout=60) == 130, rest
    assert "interrupted" in rest and "Traceback" not in rest, rest
    assert not out.exists() or not any(out.iterdir()), list(out.iterdir())


def test_a_loss_is_minimised_unless_told_otherwise():
    from genretune.search.cli.search import parse_objectives, settings_from_argv

    assert settings_from_argv([]).mode == "max"
    assert settings_from_argv(["--metric", "val_hamming_loss"]).mode == "min"
    assert settings_from_argv(["--metric", "val_hamming_loss", "--mode", "max"]).mode == "max"
    assert settings_from_argv(["--metric", "val_pr_auc_macro"]).mode == "max"
    assert parse_objectives("val_f1,val_hamming_loss") == (
        ("val_f1", "max"),
        ("val_hamming_loss", "min"),
    )
    # Durations are better short: accuracy against speed minimises the epoch time.
    assert parse_objectives("val_f1,epoch_seconds")[1] == ("epoch_seconds", "min")


def test_a_baseline_outside_the_space_runs_its_nearest_point_and_says_so(tmp_path, capsys):
    from genretune.search.cli.search import settings_from_argv

    inside = tmp_path / "inside.json"
    inside.write_text(json.dumps({"lr": 0.001, "base_channels": 8}))
    s = settings_from_argv(["--baseline", str(inside)])
    assert (s.baseline["lr"], s.baseline["base_channels"]) == (0.001, 8)
    assert "note:" not in capsys.readouterr().err

    outside = tmp_path / "outside.json"
    outside.write_text(json.dumps({"lr": 5.0, "base_channels": 1000, "pos_weight_power": 0.5}))
    s = settings_from_argv(["--baseline", str(outside)])
    high = s.space["lr"].high
    assert s.baseline["lr"] == high and s.baseline["pos_weight_power"] == 0.5
    assert s.baseline["base_channels"] == max(s.space["base_channels"].choices)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"note: --baseline {outside}: ")
    assert f"lr 5.0 -> {high!r}" in err[0] and "base_channels 1000 -> " in err[0]
    assert "pos_weight_power" not in err[0]

    # 16.0 is the integer 16 (as a config file's value is); null is "no cap", the loosest cap.
    loose = tmp_path / "loose.json"
    loose.write_text(json.dumps({"base_channels": 16.0, "pos_weight_cap": None}))
    s = settings_from_argv(["--baseline", str(loose)])
    assert s.baseline["base_channels"] == 16 and isinstance(s.baseline["base_channels"], int)
    assert s.baseline["pos_weight_cap"] == s.space["pos_weight_cap"].high


def test_a_ctrl_c_lost_in_a_finalizer_is_honoured_when_the_run_returns():
    """A Ctrl-C that lands while the main thread runs a finalizer raises KeyboardInterrupt
    there, where Python only reports it (seen under load: a suite's Ctrl-C before Ray's
    handler was in place, and the search ran on to its end)."""
    from genretune.search.stop_signals import InterruptWatch

    class Finalized:
        def __del__(self):
            signal.getsignal(signal.SIGINT)(signal.SIGINT, None)  # the signal arrives here

    from ray.tune.tune import _setup_signal_catching

    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGUSR1)}
    with pytest.raises(KeyboardInterrupt):
        with InterruptWatch():
            Finalized()  # its KeyboardInterrupt is reported as unraisable, not raised
            _setup_signal_catching()  # then Tuner.fit() starts, and runs to its end
            reached_the_end_of_the_run = True
    assert reached_the_end_of_the_run
    assert {s: signal.getsignal(s) for s in before} == before


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGUSR1], ids=["sigint", "sigusr1"])
def test_interrupt_watch_tells_a_signal_ray_caught_from_a_run_that_ended(signum):
    """Ray Tune's own signal catching (what Tuner.fit() installs): a run that ends leaves
    its handler behind; one stopped by a signal has put back the handler it found."""
    from ray.tune.tune import _setup_signal_catching

    from genretune.search.stop_signals import InterruptWatch

    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGUSR1)}
    with InterruptWatch() as watch:
        _setup_signal_catching()
    assert not watch.interrupted
    with InterruptWatch() as watch:
        caught = _setup_signal_catching()
        os.kill(os.getpid(), signum)
        assert caught.wait(5)
    assert watch.interrupted
    assert {s: signal.getsignal(s) for s in before} == before
    with InterruptWatch(enabled=False) as watch:
        caught = _setup_signal_catching()
        os.kill(os.getpid(), signum)
        assert caught.wait(5)
    assert not watch.interrupted
    for s, handler in before.items():
        signal.signal(s, handler)


def test_a_space_file_range_holds_on_real_data_too(feature_dir, tmp_path):
    """On a real dataset the default min-samples range is the full profile's; a range the
    space file gives is kept as given, and a fixed value leaves the space."""
    from genretune.search.cli.search import settings_from_argv
    from genretune.search.profiles import get_profile
    from genretune.search.space import default_space

    real = ["--data", str(feature_dir)]
    full = default_space(get_profile("full"))["min_samples_per_genre"]
    assert settings_from_argv(real).space["min_samples_per_genre"] == full
    ranged = tmp_path / "space.yaml"
    ranged.write_text("min_samples_per_genre: {type: int, low: 2, high: 9}\n")
    dist = settings_from_argv([*real, "--space", str(ranged)]).space["min_samples_per_genre"]
    assert (dist.low, dist.high) == (2, 9)
    fixed = tmp_path / "fixed.yaml"
    fixed.write_text("min_samples_per_genre: 7\n")
    s = settings_from_argv([*real, "--space", str(fixed)])
    assert "min_samples_per_genre" not in s.space and s.base.to_flat()["min_samples_per_genre"] == 7
