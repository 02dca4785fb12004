"""A search that starts its own local Ray binds every listening socket to the loopback
interface: nothing of it is reachable from the network."""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import TINY_SEARCH

# Starts Ray or trains real models: the full suite (make test), not the fast lane.
pytestmark = pytest.mark.slow

GENRETUNE = str(Path(sys.executable).with_name("genretune"))


def _session_pids(sid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # field 6 of /proc/PID/stat: the session id
            pids.append(int(entry.name))
    return pids


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    try:
        for fd in (Path("/proc") / str(pid) / "fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        pass
    return inodes


def _address(hex_address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    raw = bytes.fromhex(hex_address)
    if len(raw) == 4:
        return ipaddress.IPv4Address(raw[::-1])
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    return ipaddress.IPv6Address(words)


def listening_addresses(pids: list[int]) -> list[tuple[str, int]]:
    """(address, port) of the TCP sockets these processes listen on (from /proc/net)."""
    inodes = set().union(*(_socket_inodes(pid) for pid in pids)) if pids else set()
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            parts = line.split()
            local, state, inode = parts[1], parts[3], parts[9]
            if state == "0A" and inode in inodes:  # 0A = LISTEN
                host, port = local.split(":")
                found.append((str(_address(host)), int(port, 16)))
    return found


def _is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def test_a_local_search_listens_on_loopback_only(tmp_path, isolated_cache):
    env = {**os.environ, "GENRETUNE_CACHE_DIR": str(isolated_cache)}
    env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
    argv = [GENRETUNE, "search", *TINY_SEARCH, "--epochs", "30", "--num-samples", "2"]
    argv += ["--name", "net", "--storage-path", str(tmp_path)]
    proc = subprocess.Popen(
        argv,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        # Once a trial reports, the GCS, the raylet, the workers and the driver all listen.
        while not list((tmp_path / "net").glob("trial_*/progress.csv")):
            assert proc.poll() is None, "the search ended early"
            assert time.monotonic() < deadline, "no trial reported"
            time.sleep(0.5)
        sockets = listening_addresses(_session_pids(proc.pid))
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    assert len(sockets) >= 3, sockets  # GCS, raylet, workers: the search's own Ray
    exposed = [s for s in sockets if not _is_loopback(s[0])]
    assert not exposed, f"listening beyond loopback: {exposed}"
