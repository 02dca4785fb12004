"""The local Ray a search starts: every listening socket of it is bound to the loopback
interface (nothing of it is reachable from the network), and none of its processes outlives
the search."""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import TINY_SEARCH

# Starts Ray or trains real models: the full suite (make test), not the fast lane.
pytestmark = pytest.mark.slow

GENRETUNE = str(Path(sys.executable).with_name("genretune"))


def _session_pids(sid: int) -> list[int]:
    """The live (not zombie) processes of session `sid`."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # Fields 3 and 6 of /proc/PID/stat: the state and the session id.
        if int(fields[3]) == sid and fields[0] != "Z":
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


@dataclass(frozen=True)
class LocalSearch:
    exit_code: int
    sockets: list[tuple[str, int]]  # listening while a trial ran
    pids_seen: int  # processes of the search's session while a trial ran
    pids_left: list[int]  # of those, alive 10 s after the search returned


@pytest.fixture(scope="module")
def local_search(tmp_path_factory, isolated_cache) -> LocalSearch:
    """A tiny search run to its end in a session of its own, watched from outside."""
    storage = tmp_path_factory.mktemp("local-ray")
    env = {**os.environ, "GENRETUNE_CACHE_DIR": str(isolated_cache)}
    env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
    argv = [GENRETUNE, "search", *TINY_SEARCH, "--epochs", "3", "--num-samples", "2"]
    argv += ["--name", "net", "--storage-path", str(storage)]
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
        while not list((storage / "net").glob("trial_*/progress.csv")):
            assert proc.poll() is None, "the search ended early"
            assert time.monotonic() < deadline, "no trial reported"
            time.sleep(0.2)
        seen = _session_pids(proc.pid)
        sockets = listening_addresses(seen)
        code = proc.wait(timeout=300)
        deadline = time.monotonic() + 10
        while _session_pids(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        return LocalSearch(code, sockets, len(seen), _session_pids(proc.pid))
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=60)


def test_a_local_search_listens_on_loopback_only(local_search):
    sockets = local_search.sockets
    assert len(sockets) >= 3, sockets  # GCS, raylet, workers: the search's own Ray
    exposed = [s for s in sockets if not _is_loopback(s[0])]
    assert not exposed, f"listening beyond loopback: {exposed}"


def test_no_process_of_its_local_ray_outlives_the_search(local_search):
    """Its Ray's processes ignore SIGTERM (a stop signal is for the search, which saves), so
    genretune kills them when the search ends instead of Ray's per-process grace period."""
    assert local_search.exit_code == 0
    assert local_search.pids_seen >= 4  # the driver, GCS, raylet, a worker at least
    left = {pid: _command_line(pid) for pid in local_search.pids_left}
    assert not left, f"still running after the search: {left}"


def _command_line(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return "(exited)"
