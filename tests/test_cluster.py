"""A real two-node Ray cluster on this machine (`ray start --head` + `ray start --address`): when
a node is lost, its trials move to the remaining node and resume from their checkpoints. (The
walkthrough test runs a search on both nodes, the authentication refusals and the resume.)"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
from helpers import descendant_pids

from genretune.results.experiment_dir import read_end_reasons

# Starts Ray or trains real models: the full suite (make test), not the fast lane.
pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
GENRETUNE = str(BIN / "genretune")
RAY = str(BIN / "ray")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    # --block keeps `ray start` in the foreground; its own process group holds every Ray process
    # of that node, so the test ends exactly the processes it started.
    return subprocess.Popen(
        [RAY, "start", "--block", *args],
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _stop(proc: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=15)
            return
        except subprocess.TimeoutExpired:
            continue


def _search_argv(
    address: str, storage: Path, name: str, epochs: int, samples: int, scale: str = "0.02"
) -> list[str]:
    return [
        GENRETUNE,
        "search",
        "--address",
        address,
        "--name",
        name,
        "--storage-path",
        str(storage),  # one path both nodes reach, as a shared filesystem would be
        "--synthetic-scale",
        scale,
        "--base-channels",
        "4",
        "--epochs",
        str(epochs),
        "--patience",
        str(epochs),
        "--grace-period",
        str(epochs),
        "--num-samples",
        str(samples),
        "--max-concurrent",
        "2",
        "--progress-interval",
        "1000",
    ]


@pytest.fixture
def two_node_cluster(tmp_path):
    port = _free_port()
    # Token authentication, set the same way for the head, the second node and the driver.
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
    env.pop("RAY_ADDRESS", None)
    env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)  # "0" would refuse a second node
    address = f"127.0.0.1:{port}"
    # Ray's socket paths must stay under 108 bytes: pytest's tmp_path is too deep.
    temp_dir = Path(tempfile.mkdtemp(prefix="gt-ray-"))
    head = _start(
        [
            "--head",
            f"--port={port}",
            "--num-cpus=1",
            "--node-ip-address=127.0.0.1",
            "--include-dashboard=false",
            f"--temp-dir={temp_dir}",
        ],
        env,
        tmp_path / "head.log",
    )
    nodes = [head]
    try:
        deadline = time.monotonic() + 90
        status = None
        while time.monotonic() < deadline:
            status = subprocess.run(
                [RAY, "status", f"--address={address}"], env=env, capture_output=True, text=True
            )
            if status.returncode == 0:
                break
            assert head.poll() is None, (tmp_path / "head.log").read_text()
            time.sleep(1)
        assert status is not None and status.returncode == 0, status.stderr
        nodes.append(
            _start(
                [f"--address={address}", "--num-cpus=1", "--node-ip-address=127.0.0.1"],
                env,
                tmp_path / "node.log",
            )
        )
        while time.monotonic() < deadline:
            out = subprocess.run(
                [RAY, "status", f"--address={address}"], env=env, capture_output=True, text=True
            ).stdout
            if out.count("node_") >= 2:
                break
            time.sleep(1)
        else:
            pytest.fail(f"second node never joined:\n{out}")
        yield address, env, nodes[1]
    finally:
        for proc in reversed(nodes):
            _stop(proc)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _node_pids(root: int) -> list[int]:
    """The `ray start` process of a node and all its descendants (raylet, Ray workers)."""
    return descendant_pids(root)


def _kill_node(root: int) -> None:
    """SIGKILL a whole node: every process of its tree, workers included."""
    for pid in _node_pids(root):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _trial_on_node(exp: Path, node_root: int) -> str | None:
    """A trial that a worker process of the node runs (Ray Tune makes a trial's working directory
    its cwd) and that has checkpointed two epochs but is not near its end."""
    for pid in _node_pids(node_root):
        try:
            cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
        except OSError:
            continue
        if cwd.name.startswith("trial_") and 2 <= len(list((exp / cwd.name).glob("checkpoint_*"))):
            checkpoints = sorted((exp / cwd.name).glob("checkpoint_*"))
            if int(checkpoints[-1].name.split("_")[1]) < 8:
                return cwd.name
    return None


def test_lost_node_trials_resume_on_the_remaining_node(two_node_cluster, tmp_path, isolated_cache):
    address, env, worker_node = two_node_cluster
    env = {**env, "GENRETUNE_CACHE_DIR": str(isolated_cache)}
    exp = tmp_path / "runs" / "lost"
    driver = subprocess.Popen(
        # Epochs of about half a second, so the loss lands mid-trial.
        _search_argv(address, tmp_path / "runs", "lost", epochs=12, samples=3, scale="0.1"),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 400
        victim = None
        while victim is None:
            if driver.poll() is not None:
                raise AssertionError(f"search ended first:\n{driver.stdout.read()[-3000:]}")
            assert time.monotonic() < deadline, "no trial ran two epochs on the second node"
            victim = _trial_on_node(exp, worker_node.pid)
            time.sleep(0.2)
        trial_dir = victim
        _kill_node(worker_node.pid)
        worker_node.wait(timeout=30)
        out, _ = driver.communicate(timeout=600)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 0, out[-3000:]
    history = pd.read_csv(exp / trial_dir / "progress.csv")
    assert list(history["epoch"]) == list(range(1, 13)), "every epoch exactly once"
    # It started on the lost node and finished on the other one, from a checkpoint, not epoch 1.
    assert history["node_id"].iloc[0] != history["node_id"].iloc[-1]
    assert history["node_id"].nunique() == 2
    moved_at = int(history.index[history["node_id"] != history["node_id"].iloc[0]][0])
    assert moved_at >= 2, "resumed from a checkpoint of at least two epochs"
    reasons = read_end_reasons(exp)
    assert len(reasons) == 3 and {r["end_reason"] for r in reasons.values()} == {"max_epochs"}
