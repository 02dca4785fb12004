"""The experiment directory as one owned artefact (fast lane): the settings schema, the writer
lock, names, and what counts as inside an experiment. With real searches:
test_experiment_life.py."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna.distributions as od
import pytest
from helpers import search_settings

from genretune.data import InputError
from genretune.results import experiment_dir as layout
from genretune.results import writer_lock
from genretune.search import experiment_writer
from genretune.search.settings import Resources, SearchSettings, settings_from_json

# A value other than the default for every field the settings file keeps (and a test that
# fails when a field is added without one here: a new field must be shown to survive).
NON_DEFAULT = {
    "profile": "full",
    "baseline": {"lr": 0.001},
    "metric": "best_val_f1_macro",
    "mode": "min",
    "num_samples": 17,
    "grace_period": 3,
    "reduction_factor": 4,
    "seed": 9,
    "decision": "space",
    "resources": Resources(0.5, 0.25, 3),
    "max_failures": 5,
    "address": "10.0.0.1:6379",
    "data_on_workers": True,
    "optuna_storage": "postgresql://db.example/optuna",
    "study_name": "first-name",
    "progress_interval": 7.5,
    "mlflow_uri": "sqlite:///mlflow.db",
    "sampler": "random",
    "scheduler": "fifo",
    "budget_epochs": 90,
    "tpe_startup_trials": 6,
    "tpe_multivariate": True,
    "tpe_constant_liar": True,
    "baseline_draws": ({"lr": 0.002}, {"lr": 0.003}),
    "cut_trials_as": "pruned",
    "late_cut": False,
    "ramp_up": 4,
    "objectives": (("val_f1", "max"), ("val_coverage", "max")),
}


def _round_trip(s: SearchSettings, name: str, storage: str) -> SearchSettings:
    return settings_from_json(json.loads(json.dumps(s.to_json())), name, storage)


def test_every_settings_field_survives_the_settings_file(tmp_path):
    s = search_settings(tmp_path, "--name", "exp")
    saved = {f.name for f in dataclasses.fields(SearchSettings) if f.metadata.get("saved", True)}
    special = {"base", "space"}  # compared below
    assert saved - special == set(NON_DEFAULT), "give every saved field a value in NON_DEFAULT"
    changed = dataclasses.replace(s, **NON_DEFAULT)
    for f in dataclasses.fields(SearchSettings):
        if f.name in NON_DEFAULT:
            assert getattr(changed, f.name) != getattr(s, f.name), f.name
    again = _round_trip(changed, changed.name, changed.storage_path)
    assert again == changed
    # The space and the base config are compared whole too (same distributions, same config).
    assert again.space == changed.space and again.base == changed.base


def test_the_settings_file_names_no_location(tmp_path):
    s = search_settings(tmp_path / "somewhere" / "runs", "--name", "exp")
    text = json.dumps(s.to_json())
    assert str(tmp_path) not in text
    payload = s.to_json()
    assert payload["schema_version"] == layout.SETTINGS_SCHEMA_VERSION
    assert payload["optuna_storage"] is None and payload["study_name"] == "exp"
    # Read back where it is now: a moved experiment is at its new place, with its old study.
    moved = settings_from_json(payload, "renamed", str(tmp_path / "elsewhere"))
    assert moved.experiment_path == f"{tmp_path}/elsewhere/renamed"
    assert moved.optuna_url() == f"sqlite:///{tmp_path}/elsewhere/renamed/optuna.db"
    assert moved.study == "exp"


def test_a_version_1_settings_file_is_read_with_its_own_defaults(tmp_path):
    s = search_settings(tmp_path, "--name", "old")
    v1 = {k: v for k, v in s.to_json().items() if k != "schema_version"}
    for key in ("tpe_multivariate", "tpe_constant_liar", "mlflow_uri", "address"):
        v1.pop(key)
    v1.update(
        name="old", storage_path="/data/runs", optuna_storage="sqlite:////data/runs/old/optuna.db"
    )
    again = settings_from_json(v1, "old", str(tmp_path))
    # Searches written before these were settings ran with Optuna's defaults.
    assert again.tpe_multivariate and again.tpe_constant_liar
    # The default study is the one in the experiment where it is now, not its first place.
    assert again.optuna_storage is None
    assert again.optuna_url() == f"sqlite:///{tmp_path}/old/optuna.db"
    assert layout.study_url(tmp_path / "old", v1) == f"sqlite:///{tmp_path}/old/optuna.db"
    # A user's own storage stays as given.
    v1["optuna_storage"] = "sqlite:////shared/studies.db"
    assert settings_from_json(v1, "old", str(tmp_path)).optuna_storage == v1["optuna_storage"]
    assert layout.study_url(tmp_path / "old", v1) == "sqlite:////shared/studies.db"


@pytest.mark.parametrize(
    "edit, named",
    [
        ({"num_samples": "12"}, "'num_samples'"),
        ({"late_cut": 1}, "'late_cut'"),
        ({"resources": {"cpus": 1}}, "'resources'"),
        ({"space": {"lr": {"name": "Nope"}}}, "'space'"),
        ({"baseline": [1, 2]}, "'baseline'"),
        ({"schema_version": 99}, "newer genretune"),
    ],
)
def test_a_hand_edited_settings_file_is_refused_naming_the_key(tmp_path, edit, named):
    s = search_settings(tmp_path, "--name", "exp")
    payload = {**s.to_json(), **edit}
    with pytest.raises(InputError, match=named) as info:
        settings_from_json(payload, "exp", str(tmp_path), file="genretune_search.json")
    assert "genretune_search.json" in str(info.value) and "\n" not in str(info.value)


def test_readers_refuse_wrong_types_in_the_settings(tmp_path):
    exp = tmp_path / "exp"
    exp.mkdir()
    for edit, named in [
        ({"mode": "sideways"}, "'mode'"),
        ({"metric": 3}, "'metric'"),
        ({"study_name": ["x"]}, "'study_name'"),
        ({"schema_version": 3}, "newer genretune"),
    ]:
        payload = {"metric": "best_val_f1", "mode": "max", "space": {}, **edit}
        (exp / layout.SETTINGS_FILE).write_text(json.dumps(payload))
        with pytest.raises(InputError, match=named):
            layout.read_settings(exp)


@pytest.mark.parametrize("name", ["exp\n", "exp\r", " exp", "a/b", "..", ".hidden", "x" * 101])
def test_names_are_checked_whole(name):
    with pytest.raises(InputError, match="--name"):
        experiment_writer.check_name(name)


def test_outputs_inside_an_experiment_are_recognised(tmp_path):
    exp = tmp_path / "runs" / "exp"
    (exp / "trial_1").mkdir(parents=True)
    (exp / layout.SETTINGS_FILE).write_text("{}")
    assert layout.enclosing_experiment(exp / layout.SETTINGS_FILE) == exp
    assert layout.enclosing_experiment(exp / "trial_1" / "new.csv") == exp
    assert layout.enclosing_experiment(tmp_path / "runs" / "exp.lock") == exp
    assert layout.enclosing_experiment(tmp_path / "runs" / "other.csv") is None
    (tmp_path / "link").symlink_to(exp)
    assert layout.enclosing_experiment(tmp_path / "link" / "x.json") in (exp, tmp_path / "link")


# -- the writer lock --------------------------------------------------------------------------


def test_a_second_writer_is_refused_naming_the_holder(tmp_path):
    exp = tmp_path / "exp"
    with writer_lock.WriterLock(exp) as first:
        assert layout.lock_path(exp).is_file() and not exp.exists()
        holder = writer_lock.read_lock(exp)
        assert holder["pid"] == os.getpid() and not holder["gone"]
        with pytest.raises(InputError) as info:
            writer_lock.WriterLock(exp).acquire()
        message = str(info.value)
        assert f"pid {os.getpid()}" in message and socket.gethostname() in message
        assert "since" in message and "\n" not in message
        with pytest.raises(InputError):
            writer_lock.WriterLock(exp).check_free()
        assert first.held
    assert not layout.lock_path(exp).exists()
    assert writer_lock.read_lock(exp) is None


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_lock_whose_writer_is_gone_is_taken_over_with_a_note(tmp_path, capsys):
    exp = tmp_path / "exp"
    holder = {"host": socket.gethostname(), "pid": _dead_pid(), "since": "earlier"}
    layout.lock_path(exp).write_text(json.dumps(holder))
    assert writer_lock.read_lock(exp)["gone"]
    with writer_lock.WriterLock(exp):
        assert writer_lock.read_lock(exp)["pid"] == os.getpid()
    assert "took over the lock" in capsys.readouterr().err


def test_a_lock_from_another_host_is_kept_while_its_heartbeat_is_fresh(tmp_path):
    exp = tmp_path / "exp"
    lock = layout.lock_path(exp)
    lock.write_text(json.dumps({"host": "other-node", "pid": 1, "since": "earlier"}))
    with pytest.raises(InputError, match="host other-node"):
        writer_lock.WriterLock(exp).acquire()
    old = time.time() - writer_lock.STALE_AFTER_S - 5
    os.utime(lock, (old, old))  # no heartbeat for longer than STALE_AFTER_S: that writer is gone
    with writer_lock.WriterLock(exp):
        assert writer_lock.read_lock(exp)["host"] == socket.gethostname()


def test_a_reused_pid_does_not_keep_a_lock(tmp_path):
    exp = tmp_path / "exp"
    # This process's pid, but another start time: the pid was reused after the writer died.
    holder = {"host": socket.gethostname(), "pid": os.getpid(), "started": "1", "since": "x"}
    layout.lock_path(exp).write_text(json.dumps(holder))
    assert writer_lock.read_lock(exp)["gone"]


def test_the_heartbeat_touches_the_lock(tmp_path, monkeypatch):
    monkeypatch.setattr(writer_lock, "HEARTBEAT_S", 0.1)
    exp = tmp_path / "exp"
    with writer_lock.WriterLock(exp):
        lock = layout.lock_path(exp)
        old = time.time() - 1000
        os.utime(lock, (old, old))
        deadline = time.monotonic() + 30
        while lock.stat().st_mtime < old + 500:
            assert time.monotonic() < deadline, "no heartbeat"
            time.sleep(0.05)


def _try_lock(path: str, start, done, results) -> None:
    start.wait()
    try:
        lock = writer_lock.WriterLock(Path(path))
        lock.acquire()
    except InputError:
        results.put("refused")
        return
    results.put("won")
    done.wait(60)  # held until every process has tried
    lock.release()


def test_of_writers_starting_together_exactly_one_wins(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    start, done, results = ctx.Event(), ctx.Event(), ctx.Queue()
    args = (str(tmp_path / "exp"), start, done, results)
    procs = [ctx.Process(target=_try_lock, args=args) for _ in range(4)]
    for p in procs:
        p.start()
    start.set()
    outcomes = sorted(results.get(timeout=120) for _ in procs)
    done.set()
    for p in procs:
        p.join(60)
    assert outcomes == ["refused", "refused", "refused", "won"]
    assert not layout.lock_path(tmp_path / "exp").exists()


def test_space_distributions_round_trip_exactly(tmp_path):
    s = search_settings(tmp_path, "--name", "exp")
    payload = json.loads(json.dumps(s.to_json()))
    for key, dist in s.space.items():
        assert od.json_to_distribution(payload["space"][key]) == dist


def test_a_live_trial_shows_its_true_status():
    """Ray saves a running search's state every so often; the end reasons and the history are
    written as trials end and epochs pass: results reads a trial's status from the freshest."""
    from genretune.results.experiment import _true_status

    assert _true_status("PENDING", "max_epochs", has_rows=True) == "TERMINATED"
    assert _true_status("RUNNING", "asha", has_rows=True) == "TERMINATED"
    assert _true_status("PENDING", None, has_rows=True) == "RUNNING"
    assert _true_status("PENDING", None, has_rows=False) == "PENDING"
    assert _true_status("ERROR", "error", has_rows=True) == "ERROR"
    # An errored trial that --resume continues is running again, whatever its old reason.
    assert _true_status("RUNNING", "error", has_rows=True) == "RUNNING"


def test_the_progress_line_says_budget_trials_and_an_eta():
    from genretune.search.monitoring import Counts, progress_text

    c = Counts(spent=45, done=5, running=2, created=8, cut=3, ended_epochs=[2, 2, 2, 9, 10])
    text = progress_text(c, 20, 90, 10, elapsed=90.0, session_epochs=45)
    assert text.startswith("45 trial-epochs (50% of 90); trials 5 done (3 cut), 2 running,")
    assert "13 to go of 20" in text and "1m30s elapsed" in text
    # 45 epochs left of the budget at 0.5 epochs/s.
    assert text.endswith("ETA 1m30s")
    # Without a budget: every trial for the epochs ended trials took on average (5).
    text = progress_text(c, 20, None, 10, elapsed=90.0, session_epochs=45)
    assert text.startswith("45 trial-epochs; ") and text.endswith("ETA 1m50s")
    # A resumed search paces itself on this session's epochs only.
    text = progress_text(c, 20, 90, 10, elapsed=90.0, session_epochs=9)
    assert text.endswith("ETA 7m30s")
    assert "ETA" not in progress_text(c, 20, 90, 10, elapsed=0.0, session_epochs=0)


@pytest.mark.parametrize("mode", ["sideways", "MAX", ""])
def test_the_api_refuses_a_mode_like_the_cli(tmp_path, mode):
    import pandas as pd

    from genretune.results.experiment import Experiment

    trials = pd.DataFrame({"trial_id": ["a", "b"], "best_val_f1": [0.2, 0.3]})
    history = pd.DataFrame({"trial_id": ["a", "b"], "val_f1": [0.2, 0.3]})
    settings = {"metric": "val_f1", "mode": "max", "space": {}}
    exp = Experiment(path=tmp_path, settings=settings, trials=trials, history=history)
    assert exp.best("val_f1", "max")["trial_id"] == "b"
    with pytest.raises(InputError, match="use 'max' or 'min'"):
        exp.best("val_f1", mode)


def test_the_best_epochs_rule_of_a_tuned_search_turns_zero_parts_off():
    import pandas as pd

    from genretune.results.experiment import Experiment
    from genretune.results.export import best_epoch_rule

    exp = Experiment(Path("x"), {"decision": "tuned"}, pd.DataFrame(), pd.DataFrame())
    row = pd.Series({"best_tuned_threshold": 0.0, "best_tuned_top_k": 3, "best_tuned_val_f1": 0.5})
    assert best_epoch_rule(exp, row, {"threshold": 0.5, "top_k": None}) == {
        "threshold": None, "top_k": 3, "fitted_on": "val", "f1": 0.5}  # fmt: skip
    row = pd.Series({"best_tuned_threshold": 0.35, "best_tuned_top_k": 0})
    assert best_epoch_rule(exp, row, {})["threshold"] == 0.35
    assert best_epoch_rule(exp, row, {})["top_k"] is None
    searched = Experiment(Path("x"), {"decision": "space"}, pd.DataFrame(), pd.DataFrame())
    assert best_epoch_rule(searched, row, {"threshold": 0.4, "top_k": 2}) == {
        "threshold": 0.4, "top_k": 2}  # fmt: skip


def _ended(trial_id: str, exp: Path, staging: Path, epochs: int = 3):
    from types import SimpleNamespace

    return SimpleNamespace(
        trial_id=trial_id,
        last_result={"training_iteration": epochs, "best_val_f1": 0.5},
        remote_experiment_path=str(exp),
        local_experiment_path=str(staging),
    )


def test_end_reasons_are_appended_after_one_rewrite_of_what_both_copies_hold(tmp_path):
    from genretune.search.monitoring import TrialMonitor

    exp, staging = tmp_path / "exp", tmp_path / "staging"
    exp.mkdir()
    # An experiment from before the journal, resumed once since: a map and a journal.
    (exp / layout.LEGACY_END_REASONS_FILE).write_text(
        json.dumps({"old": {"end_reason": "asha", "epochs": 1}})
    )
    (exp / layout.END_REASONS_FILE).write_text(
        layout.end_reason_line("mid", {"end_reason": "patience", "epochs": 4})
    )
    monitor = TrialMonitor("best_val_f1", "max", epochs=9, patience=3, searched=())
    monitor._record(_ended("t0", exp, staging), "max_epochs")
    journal = exp / layout.END_REASONS_FILE
    inode = journal.stat().st_ino
    for i in range(1, 50):
        monitor._record(_ended(f"t{i}", exp, staging), "asha")
    assert journal.stat().st_ino == inode  # appended to, not rewritten per trial
    for where in (exp, staging):
        reasons = layout.read_end_reasons(where)
        assert set(reasons) == {"old", "mid", *(f"t{i}" for i in range(50))}
        assert reasons["mid"]["end_reason"] == "patience"
        assert reasons["t0"] == {"end_reason": "max_epochs", "epochs": 3, "best_val_f1": 0.5}
    # The staging copy (which Ray copies over the experiment's) has every line too.
    assert (staging / layout.END_REASONS_FILE).read_text() == journal.read_text()


def test_a_cut_end_reason_line_is_skipped_and_said_and_the_next_lands_whole(tmp_path, capsys):
    from genretune.search.monitoring import TrialMonitor

    exp = tmp_path / "exp"
    monitor = TrialMonitor("best_val_f1", "max", epochs=9, patience=3, searched=())
    monitor._record(_ended("a", exp, exp), "asha")
    journal = exp / layout.END_REASONS_FILE
    with journal.open("a") as fh:
        fh.write('{"trial_id": "b", "end_re')  # a kill or a full disk mid-line
    monitor._record(_ended("c", exp, exp), "patience")
    reasons = layout.read_end_reasons(exp)
    assert set(reasons) == {"a", "c"}
    assert "trial_end_reasons.jsonl: ignored 1 cut or damaged line(s)" in capsys.readouterr().err
    # A later line of a trial wins (a trial Ray ran again after an error).
    monitor._record(_ended("a", exp, exp, epochs=7), "max_epochs")
    assert layout.read_end_reasons(exp)["a"]["epochs"] == 7


@pytest.mark.parametrize("text", ["\x00garbage", "[1, 2]\n", '{"no": "trial id"}\n'])
def test_a_damaged_end_reasons_journal_is_refused_naming_it(tmp_path, text):
    (tmp_path / layout.END_REASONS_FILE).write_text(text)
    with pytest.raises(InputError, match=r"trial_end_reasons\.jsonl: not JSON lines"):
        layout.read_end_reasons(tmp_path)
