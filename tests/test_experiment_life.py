"""An experiment's life with real searches, real processes and real signals: stopped by
SIGTERM or SIGHUP as a scheduler or a closing terminal sends them, two writers at once, a copy
resumed elsewhere, and damaged saved state refused before anything changes."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from cli_runner import run_cli

from genretune.results import experiment_dir as layout

# Starts Ray or trains real models: the full suite (make test), not the fast lane.
pytestmark = pytest.mark.slow

GENRETUNE = str(Path(sys.executable).with_name("genretune"))
ARGS = ["--synthetic-scale", "0.02", "--base-channels", "4", "--epochs", "6", "--patience", "6",
        "--grace-period", "6", "--num-samples", "4", "--progress-interval", "1000"]  # fmt: skip


def _start(argv: list[str], cwd: Path) -> subprocess.Popen:
    """`genretune ARGV` in a process group of its own, as a shell job or a scheduler runs it."""
    return subprocess.Popen([GENRETUNE, *argv], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip


def _wait_for(ready, proc: subprocess.Popen, what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"ended before {what}:\n{out[-2000:]}\n{err[-3000:]}")
        assert time.monotonic() < deadline, f"no {what} within {timeout:.0f}s"
        time.sleep(0.5)


def _epochs_logged(exp: Path) -> int:
    return max(
        (len(p.read_text().splitlines()) - 1 for p in exp.glob("trial_*/progress.csv")), default=0
    )


def _signal_group(proc: subprocess.Popen, sig: int) -> subprocess.CompletedProcess:
    """Send `sig` to the whole process group (the local Ray's processes too), as a batch
    scheduler or a closing terminal does; wait for the driver and clean up the group."""
    try:
        os.killpg(proc.pid, sig)
        out, err = proc.communicate(timeout=180)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _resume_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("genretune search --resume")]


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory, isolated_cache):
    """A search stopped by SIGTERM to its process group once a trial has logged 2 epochs."""
    root = tmp_path_factory.mktemp("life")
    runs = root / "runs"
    proc = _start(["search", *ARGS, "--name", "term", "--storage-path", "runs"], cwd=root)
    _wait_for(lambda: _epochs_logged(runs / "term") >= 2, proc, "two logged epochs")
    stopped = _signal_group(proc, signal.SIGTERM)
    return runs / "term", stopped


def test_sigterm_saves_the_search_and_prints_a_resume_command(interrupted):
    exp, stopped = interrupted
    assert stopped.returncode == 143, stopped.stderr[-3000:]
    assert "Traceback" not in stopped.stderr and "Traceback" not in stopped.stdout
    assert "interrupted by SIGTERM" in stopped.stderr
    assert "Tuner.restore" not in stopped.stderr  # Ray's own advice would compete with ours
    commands = _resume_lines(stopped.stderr)
    expected = shlex.join(
        ["genretune", "search", "--resume", "term", "--storage-path", str(exp.parent)]
    )
    assert commands == [expected], stopped.stderr[-3000:]
    assert not layout.lock_path(exp).exists(), "the lock is released on a signal"
    assert not (exp / layout.FINISHED_FILE).exists()
    assert (exp / layout.TUNER_FILE).is_file() and list(exp.glob(layout.EXPERIMENT_STATE_GLOB))


def _damage(kind: str, exp: Path):
    """Damage a copy of an interrupted experiment; returns (file named, a context to hold)."""
    if kind == "tuner.pkl garbage":
        (exp / "tuner.pkl").write_bytes(b"\x80\x04garbage")
        return "tuner.pkl", None
    if kind == "optuna.db garbage":
        (exp / "optuna.db").write_bytes(os.urandom(4096))
        return "optuna.db", None
    if kind == "optuna.db deleted":
        (exp / "optuna.db").unlink()
        return "optuna.db", None
    if kind == "optuna.db locked":
        db = sqlite3.connect(exp / "optuna.db", timeout=1)
        db.execute("BEGIN EXCLUSIVE")
        return "optuna.db", db
    if kind == "searcher state garbage":
        state = next(exp.glob(layout.SEARCHER_STATE_GLOB))
        state.write_bytes(b"not a pickle")
        return state.name, None
    if kind == "experiment state garbage":
        state = max(exp.glob(layout.EXPERIMENT_STATE_GLOB))
        state.write_text('{"trial_data": [')
        return state.name, None
    if kind == "settings of the wrong type":
        settings = json.loads((exp / layout.SETTINGS_FILE).read_text())
        settings["num_samples"] = "four"
        (exp / layout.SETTINGS_FILE).write_text(json.dumps(settings))
        return layout.SETTINGS_FILE, None
    raise AssertionError(kind)


DAMAGE = [
    "tuner.pkl garbage",
    "optuna.db garbage",
    "optuna.db deleted",
    "optuna.db locked",
    "searcher state garbage",
    "experiment state garbage",
    "settings of the wrong type",
]


@pytest.mark.parametrize("kind", DAMAGE)
def test_damaged_state_is_refused_before_anything_changes(interrupted, tmp_path, kind):
    exp, _ = interrupted
    copy = tmp_path / "runs" / "copy"
    copy.parent.mkdir()
    subprocess.run(["cp", "-a", str(exp), str(copy)], check=True)
    # Hashed before the damage: reading the database file in this process would release the
    # sqlite lock held in it (POSIX locks go with any descriptor of the file being closed).
    before = _hashes(tmp_path / "runs")
    named, holder = _damage(kind, copy)
    if holder is None:
        before = _hashes(tmp_path / "runs")
    try:
        res = run_cli(["search", "--resume", "copy", "--storage-path", str(copy.parent)],
                      cwd=tmp_path, scratch=tmp_path)  # fmt: skip
    finally:
        if holder is not None:
            holder.rollback()
            holder.close()
    assert res.returncode == 2, res.stderr[-2000:]
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("genretune: error: "), res.stderr
    assert named in lines[0]
    if kind != "settings of the wrong type":
        assert "genretune results copy" in lines[0] and "trial(s)" in lines[0], lines[0]
    if holder is None:
        assert _hashes(tmp_path / "runs") == before, "a refused resume changed the experiment"


def test_a_copy_resumes_on_its_own_and_the_original_is_untouched(interrupted, tmp_path):
    exp, _ = interrupted
    before = _hashes(exp.parent)
    elsewhere = tmp_path / "moved" / "runs"
    elsewhere.mkdir(parents=True)
    subprocess.run(["cp", "-a", str(exp), str(elsewhere / "renamed")], check=True)
    other_cwd = tmp_path / "cwd"
    other_cwd.mkdir()
    resume = [GENRETUNE, "search", "--resume", "renamed", "--storage-path", str(elsewhere)]
    res = subprocess.run(resume, cwd=other_cwd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert _hashes(exp.parent) == before, "resuming a copy changed the original"
    copy = elsewhere / "renamed"
    assert (copy / layout.FINISHED_FILE).is_file()
    # The copy's own study holds every trial; the original's still holds what it had.
    study = optuna.load_study(study_name="term", storage=f"sqlite:///{copy / 'optuna.db'}")
    assert sum(t.state.is_finished() for t in study.trials) == 4
    assert not any(p.name.startswith("trial_") for p in other_cwd.rglob("*"))
    res = subprocess.run(
        [GENRETUNE, "results", str(copy)], capture_output=True, text=True, cwd=other_cwd
    )
    assert res.returncode == 0 and "4 trials" in res.stdout, res.stderr


def test_the_printed_resume_command_runs_verbatim_from_any_directory(interrupted, tmp_path):
    exp, stopped = interrupted
    command = _resume_lines(stopped.stderr)[0]
    argv = shlex.split(command)
    res = subprocess.run([GENRETUNE, *argv[1:]], cwd=tmp_path, capture_output=True, text=True,
                         timeout=600)  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    assert (exp / layout.FINISHED_FILE).is_file()
    assert list(tmp_path.iterdir()) == []


def test_two_writers_one_experiment(tmp_path, isolated_cache):
    """Two searches of one new name started together: one runs, the other is refused in one
    line. While it runs, --resume, --overwrite and a third start are refused at once and
    results reads it; SIGHUP then stops it as Ctrl-C would."""
    argv = ["search", *ARGS, "--epochs", "40", "--patience", "40", "--grace-period", "40",
            "--name", "both", "--storage-path", str(tmp_path / "runs")]  # fmt: skip
    first, second = _start(argv, tmp_path), _start(argv, tmp_path)
    exp = tmp_path / "runs" / "both"
    try:
        deadline = time.monotonic() + 300
        while first.poll() is None and second.poll() is None:
            assert time.monotonic() < deadline, "neither search was refused"
            time.sleep(0.5)
        loser, winner = (first, second) if first.poll() is not None else (second, first)
        out, err = loser.communicate()
        assert loser.returncode == 2, err[-3000:]
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "in use by another genretune search" in lines[0], err
        assert f"pid {winner.pid}" in lines[0]
        _wait_for(lambda: _epochs_logged(exp) >= 1, winner, "a logged epoch")
        names_before = sorted(p.name for p in exp.iterdir())
        for extra in (["--resume", "both"], ["--overwrite", *argv[1:]], argv[1:]):
            args = ["search", *extra] if extra[0] == "--resume" else ["search", *extra]
            if extra[0] == "--resume":
                args += ["--storage-path", str(tmp_path / "runs")]
            res = run_cli(args, cwd=tmp_path, scratch=tmp_path)
            assert res.returncode == 2, (args, res.stderr[-2000:])
            assert res.stderr.count("\n") == 1 and "in use" in res.stderr, res.stderr
        res = run_cli(["results", "both", "--storage-path", str(tmp_path / "runs")],
                      cwd=tmp_path, scratch=tmp_path)  # fmt: skip
        assert res.returncode == 0 and "being written by a running search" in res.stderr
        assert set(names_before) <= {p.name for p in exp.iterdir()}
        stopped = _signal_group(winner, signal.SIGHUP)
        assert stopped.returncode == 129, stopped.stderr[-3000:]
        assert _resume_lines(stopped.stderr)[0].startswith("genretune search --resume both")
    finally:
        for proc in (first, second):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    # Every trial directory the search made is one `results` lists.
    res = run_cli(["results", "both", "--storage-path", str(tmp_path / "runs"), "--format", "csv"],
                  cwd=tmp_path, scratch=tmp_path)  # fmt: skip
    assert res.returncode == 0, res.stderr
    listed = {line.split(",")[0] for line in res.stdout.splitlines()[1:]}
    assert listed == {layout.trial_id_of(d) for d in layout.trial_dirs(exp)}
    assert not layout.lock_path(exp).exists()


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB filesystem of its own (tmpfs), unmounted after the test; skipped where mounting
    is not permitted (not root, or a container without the capability)."""
    path = tmp_path / "small"
    path.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(path)],
                         capture_output=True, text=True)  # fmt: skip
    if res.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {res.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_a_search_that_fills_its_disk_stops_saved_and_resumes(small_disk, tmp_path):
    argv = ["search", *ARGS, "--epochs", "6", "--grace-period", "3", "--num-samples", "10",
            "--name", "full", "--storage-path", str(small_disk)]  # fmt: skip
    res = subprocess.run([GENRETUNE, *argv], cwd=tmp_path, capture_output=True, text=True,
                         timeout=600)  # fmt: skip
    assert res.returncode == 1, res.stderr[-3000:]
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    errors = [line for line in res.stderr.splitlines() if line.startswith("genretune: error:")]
    assert len(errors) == 1 and "storage is full" in errors[0], res.stderr
    exp = small_disk / "full"
    assert not layout.lock_path(exp).exists() and not (exp / layout.FINISHED_FILE).exists()
    ran = len(layout.trial_dirs(exp))
    assert 0 < ran < 10, "the disk was meant to fill part-way"
    # Space freed (the filesystem grown), the printed command finishes the search.
    subprocess.run(["mount", "-o", "remount,size=40m", str(small_disk)], check=True)
    argv = shlex.split(_resume_lines(res.stderr)[0])[1:]
    res = subprocess.run([GENRETUNE, *argv], cwd=tmp_path, capture_output=True, text=True,
                         timeout=600)  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    assert (exp / layout.FINISHED_FILE).is_file() and len(layout.trial_dirs(exp)) == 10
