"""A real two-node Ray cluster on this machine (`ray start --head` + `ray start --address`) runs
a search through `--address`, and trials land on both nodes."""

from __future__ import annotations

import json
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


@pytest.fixture
def two_node_cluster(tmp_path):
    port = _free_port()
    # Token authentication, set the same way for the head, the second node and the driver.
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
    env.pop("RAY_ADDRESS", None)
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
        yield address, env
    finally:
        for proc in reversed(nodes):
            _stop(proc)
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_search_through_address_uses_both_nodes(two_node_cluster, tmp_path, isolated_cache):
    address, env = two_node_cluster
    env = {**env, "GENRETUNE_CACHE_DIR": str(isolated_cache)}
    res = subprocess.run(
        [
            GENRETUNE,
            "search",
            "--address",
            address,
            "--name",
            "cluster",
            "--storage-path",
            str(tmp_path / "runs"),
            "--synthetic-scale",
            "0.02",
            "--base-channels",
            "4",
            "--epochs",
            "3",
            "--grace-period",
            "3",
            "--num-samples",
            "4",
            "--max-concurrent",
            "2",
            "--progress-interval",
            "1000",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    exp = tmp_path / "runs" / "cluster"
    nodes = set()
    for progress in exp.glob("trial_*/progress.csv"):
        nodes |= set(pd.read_csv(progress)["node_id"])
    assert len(nodes) == 2, nodes
    reasons = json.loads((exp / "trial_end_reasons.json").read_text())
    assert len(reasons) == 4
