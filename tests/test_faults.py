"""Faults a long search meets: a killed trial worker, a corrupt checkpoint, bad storage,
reused names."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
import torch
from helpers import TINY_SEARCH as TINY
from helpers import search_settings as settings
from ray import tune

from genretune.results.experiment_dir import read_end_reasons
from genretune.search.cli import main
from genretune.search.launch import run_search
from genretune.search.trainable import STATE_FILE, load_checkpoint_state

# Starts Ray or trains real models: the full suite (make test), not the fast lane.
pytestmark = pytest.mark.slow


def test_killed_trial_worker_resumes_from_its_checkpoint(local_ray, logged_epochs, tmp_path):
    s = settings(
        tmp_path,
        "--name",
        "killed",
        "--num-samples",
        "1",
        "--epochs",
        "6",
        "--patience",
        "6",
        "--grace-period",
        "6",
    )
    outcome = {}
    runner = threading.Thread(target=lambda: outcome.setdefault("results", run_search(s)))
    runner.start()
    killed_pid = None
    deadline = time.monotonic() + 300
    while runner.is_alive() and time.monotonic() < deadline:
        rows = logged_epochs("killed")
        if len(rows) >= 2:
            killed_pid = int(rows["pid"].iloc[-1])
            os.kill(killed_pid, signal.SIGKILL)  # mid-search: epoch 3 is under way
            break
        time.sleep(0.05)
    runner.join(timeout=600)
    assert killed_pid is not None, "the trial never reached epoch 2"
    results = outcome["results"]
    (result,) = list(results)
    assert result.error is None
    history = pd.read_csv(result.path + "/progress.csv")
    assert list(history["epoch"]) == list(range(1, 7)), "every epoch exactly once"
    assert list(history["training_iteration"]) == list(range(1, 7))
    assert history["pid"].iloc[-1] != killed_pid, "the trial ran on a new worker"

    # The interrupted trial's metrics equal an uninterrupted run of the same config on CPU.
    from genretune.data import load_dataset
    from genretune.model.config import config_from_flat
    from genretune.model.device import Runtime
    from genretune.model.prepare import prepare_data
    from genretune.model.training import fit

    cfg = config_from_flat({k: v for k, v in result.config.items()})
    prepared = prepare_data(load_dataset(cfg.data), cfg.filter, cfg.loss)
    clean = fit(prepared, cfg, Runtime(device="cpu", channels_last=True, num_threads=1))
    assert list(history["val_f1"]) == pytest.approx([r["val_f1"] for r in clean.history], abs=1e-9)


def test_resume_continues_an_errored_trial_and_the_study_gets_its_values(
    local_ray, logged_epochs, tmp_path
):
    """A trial that errored (its worker killed, no retries left) is continued from its last
    checkpoint by --resume under its own id; the study, which holds it as FAIL, gets a new trial
    with its parameters and every epoch's value."""
    s = settings(tmp_path, "--name", "errored", "--num-samples", "1", "--epochs", "4",
                 "--patience", "4", "--grace-period", "4", "--max-failures", "0")  # fmt: skip
    outcome = {}
    runner = threading.Thread(target=lambda: outcome.setdefault("results", run_search(s)))
    runner.start()
    exp = tmp_path / "errored"
    deadline = time.monotonic() + 300
    while runner.is_alive() and time.monotonic() < deadline:
        rows = logged_epochs("errored")
        if len(rows) >= 2:
            os.kill(int(rows["pid"].iloc[-1]), signal.SIGKILL)
            break
        time.sleep(0.05)
    runner.join(timeout=600)
    (errored,) = list(outcome["results"])
    assert errored.error is not None, "the killed trial was not retried (--max-failures 0)"
    # Killed while Ray held back a decision until the trial's checkpoint was saved, the driver
    # saves that decision (a STOP) with its state, and Ray would apply it to the resumed trial
    # at its first checkpoint: the kill lands in that instant now and then; here, every time.
    (state_file,) = exp.glob("experiment_state-*.json")
    state = json.loads(state_file.read_text())
    state["runner_data"]["_cached_trial_decisions"] = {errored.metrics["trial_id"]: "STOP"}
    state_file.write_text(json.dumps(state))

    (result,) = list(run_search(s, resume=True))
    assert result.error is None
    trial_id = result.metrics["trial_id"]
    assert trial_id == errored.metrics["trial_id"], "the same trial, continued"
    history = pd.read_csv(result.path + "/progress.csv")
    assert list(history["training_iteration"]) == [1, 2, 3, 4]
    study = optuna.load_study(study_name="errored", storage=f"sqlite:///{exp / 'optuna.db'}")
    states = sorted(t.state.name for t in study.trials)
    assert states == ["COMPLETE", "FAIL"]
    failed, done = sorted(study.trials, key=lambda t: t.state.name != "FAIL")
    assert failed.user_attrs["ray_trial_id"] == done.user_attrs["ray_trial_id"] == trial_id
    assert done.params == failed.params
    # The epochs reported before the kill come along, then those run after the resume (Ray
    # tells a trial's last epoch as its value, not as an epoch).
    assert failed.intermediate_values
    assert failed.intermediate_values.items() <= done.intermediate_values.items()
    assert sorted(done.intermediate_values) == [1, 2, 3]
    assert done.value == pytest.approx(history[s.metric].iloc[-1])


def _checkpoint_dir(root: Path, epoch: int, state: dict | None) -> Path:
    d = root / f"checkpoint_{epoch:06d}"
    d.mkdir(parents=True)
    if state is None:
        (d / STATE_FILE).write_bytes(b"truncated garbage")
    else:
        torch.save(state, d / STATE_FILE)
    return d


def test_corrupt_checkpoint_falls_back_to_the_previous_good_one(tmp_path):
    _checkpoint_dir(tmp_path, 0, {"epoch": 1})
    _checkpoint_dir(tmp_path, 1, {"epoch": 2})
    newest = _checkpoint_dir(tmp_path, 2, None)
    state = load_checkpoint_state(tune.Checkpoint.from_directory(str(newest)))
    assert state == {"epoch": 2}
    only = tmp_path / "alone"
    broken = _checkpoint_dir(only, 0, None)
    assert load_checkpoint_state(tune.Checkpoint.from_directory(str(broken))) is None


def test_unusable_storage_path_is_reported_before_ray_starts(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    code = main(["search", *TINY, "--storage-path", str(blocker / "runs"), "--name", "x"])
    err = capsys.readouterr().err
    assert code == 2 and f"--storage-path {blocker / 'runs' / 'x'}: not writable" in err
    assert blocker.read_text() == "not a directory"


def test_names_cannot_escape_the_storage_path(tmp_path, capsys):
    for name in ("../evil", "a/b", "..", ".hidden", ""):
        assert main(["search", "--name", name, "--storage-path", str(tmp_path / "r")]) == 2
        assert "--name" in capsys.readouterr().err
    assert not (tmp_path / "r").exists() and not (tmp_path / "evil").exists()


def test_existing_name_needs_resume_or_overwrite_and_finished_resume_changes_nothing(
    local_ray, tmp_path, capsys
):
    args = [
        "search",
        *TINY,
        "--storage-path",
        str(tmp_path),
        "--num-samples",
        "2",
        "--epochs",
        "2",
        "--grace-period",
        "2",
    ]
    assert main([*args, "--name", "one"]) == 0
    assert main([*args, "--name", "two", "--seed", "1"]) == 0
    capsys.readouterr()
    exp = tmp_path / "one"
    snapshot = {p: p.stat().st_mtime_ns for p in exp.rglob("*") if p.is_file()}
    assert main([*args, "--name", "one"]) == 2
    assert "already exists; use --resume" in capsys.readouterr().err
    assert main(["search", "--resume", "one", "--storage-path", str(tmp_path)]) == 0
    assert "already finished" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in exp.rglob("*") if p.is_file()} == snapshot

    # Two experiments in one storage path keep their own trials and studies.
    import optuna

    for name in ("one", "two"):
        study = optuna.load_study(
            study_name=name, storage=f"sqlite:///{tmp_path / name / 'optuna.db'}"
        )
        assert len(study.trials) == 2
        assert len([p for p in (tmp_path / name).glob("trial_*") if p.is_dir()]) == 2
    reasons = read_end_reasons(tmp_path / "one")
    assert len(reasons) == 2
    assert main([*args, "--name", "one", "--overwrite"]) == 0
    assert len([p for p in exp.glob("trial_*") if p.is_dir()]) == 2
