"""Ctrl-C stops the test suite while a search test runs: pytest ends with its own
"interrupted" exit code and leaves no process of its group behind."""

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
# An in-process search (a local Ray, real trials): the test where Ctrl-C used to be swallowed.
SEARCH_TEST = "tests/test_search.py::test_budget_random_sampler_and_fifo_scheduler"


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


# One pytest process (as a contributor runs a test file), and two as `make test` runs the suite.
@pytest.mark.parametrize("processes", [[], ["-n", "2"]], ids=["one process", "make test's two"])
def test_ctrl_c_stops_the_suite_in_a_running_search(tmp_path, processes):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_ADDRESS")}
    argv = [sys.executable, "-m", "pytest", "-s", "-q", "-p", "no:cacheprovider", *processes,
            "--basetemp", str(tmp_path / "t"), SEARCH_TEST]  # fmt: skip
    # A group of its own, as a shell gives a command: Ctrl-C signals the whole group.
    out = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True}
    child = subprocess.Popen(argv, cwd=REPO, env=env, start_new_session=True, **out)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(child.stdout), daemon=True)
    reader.start()
    try:
        # The search has begun once it has written its settings into its experiment dir.
        deadline = time.monotonic() + 300
        while not list((tmp_path / "t").glob("**/genretune_search.json")):
            assert child.poll() is None and time.monotonic() < deadline, "".join(lines[-30:])
            time.sleep(0.2)
        time.sleep(2)  # into Ray's loop: the trials start
        assert child.poll() is None, "the search test ended before Ctrl-C:\n" + "".join(lines)
        os.killpg(child.pid, signal.SIGINT)
        began = time.monotonic()
        code = child.wait(timeout=120)
        stopped_in = time.monotonic() - began
        reader.join(timeout=10)
        deadline = time.monotonic() + 30
        while _group_alive(child.pid) and time.monotonic() < deadline:
            time.sleep(0.5)
        output = "".join(lines)
        assert code == pytest.ExitCode.INTERRUPTED, output[-3000:]
        # pytest's last word: "!!!! <the interrupt>: ... !!!!" (genretune's SearchInterrupted
        # is a KeyboardInterrupt that says how many trials were left unfinished); with xdist
        # "! xdist.dsession.Interrupted: ... received keyboard-interrupt !"
        assert re.search(r"!+ \S*(KeyboardInterrupt|Interrupted)", output), output[-3000:]
        assert not _group_alive(child.pid), "processes of the interrupted suite are left"
        print(f"the suite stopped {stopped_in:.1f} s after Ctrl-C")
    finally:
        if child.poll() is None or _group_alive(child.pid):
            os.killpg(child.pid, signal.SIGKILL)
            child.wait(timeout=30)
