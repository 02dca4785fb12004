"""docs/cluster.md's walkthrough, run as written on a real two-node Ray cluster on this machine
(every address 127.0.0.1): head and worker with `ray start` and token authentication, a search
from the driver, the watchers in a second terminal, Ctrl-C, a resume refused while the cluster
is down and finished once it is back, results, export, retrain, `ray stop`."""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from helpers import default_sigint
from walkthrough import (
    INTERRUPT,
    RUN,
    SECOND,
    SERVE,
    SKIP,
    Block,
    Terminal,
    pid_namespace_prefix,
    walkthrough_blocks,
)

from genretune.results.experiment_dir import read_end_reasons

BIN = Path(sys.executable).parent
RAY_DASHBOARD_PORT = 8265  # the doc's


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_taken(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _get(url: str, timeout: float = 30) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=10) as page:
                return page.read()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _expand(word: str, env: dict[str, str]) -> str:
    """A word with its $VARIABLES replaced as bash would (they are all set here)."""
    import re

    return re.sub(r"\$(\w+)", lambda m: env[m.group(1)], word)


def _launch_name(block: Block) -> str:
    words = block.code.replace("\\\n", " ").split()
    return words[words.index("--name") + 1]


def test_the_walkthrough_blocks_parse_as_genretune_commands():
    """The fast lane's guard: the walkthrough has its steps in order, and every genretune
    command in it is one the command line accepts."""
    from genretune.search.cli import build_parser

    blocks = walkthrough_blocks()
    modes = [b.mode for b in blocks]
    assert modes.count(INTERRUPT) == 1 and SERVE in modes and SECOND in modes
    ran = [b.code for b in blocks if b.mode != SKIP]
    assert "ray start --head" in ran[0] and ran[-1].strip() == "ray stop"
    env = {"HEAD_IP": "10.0.0.1", "NODE_IP": "10.0.0.2", "RAY_PORT": "6379", "SHARED": "/s"}
    for block in blocks:
        for line in block.code.replace("\\\n", " ").splitlines():
            words = [_expand(word, env) for word in shlex.split(line)]
            if words and words[0] == "genretune":
                build_parser().parse_args(words[1:])


class _Watcher:
    """A second-terminal block serving a page: started, its URL read from what it prints."""

    def __init__(self, block: Block, env: dict[str, str], cwd: Path):
        self.proc = subprocess.Popen(
            ["bash", "-c", block.code],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=default_sigint,
        )

    def url(self, timeout: float = 90) -> str:
        import re

        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            found = re.search(r"http://localhost:\d+\S*", line)
            if found:
                return found.group(0)
        raise AssertionError(f"no URL printed:\n{''.join(seen)}")

    def stop(self) -> int:
        """Ctrl-C, as a terminal sends it: to the whole foreground group."""
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            return self.proc.wait(timeout=30)
        finally:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _watch_a_running_search(blocks: list[Block], env: dict, cwd: Path, exp: Path) -> None:
    for block in blocks:
        if block.mode == SECOND:
            res = subprocess.run(
                ["bash", "-c", block.code], env=env, cwd=cwd, capture_output=True, text=True
            )
            assert res.returncode == 0, res.stdout + res.stderr
            assert "RUNNING" in res.stdout or "running" in res.stdout, res.stdout
            continue
        watcher = _Watcher(block, env, cwd)
        try:
            url = watcher.url()
            if "/dashboard/studies/" in url:  # optuna-dashboard: the study's trials, via its API
                study_id = url.rstrip("/").rsplit("/", 1)[1]
                api = url.split("/dashboard/")[0] + f"/api/studies/{study_id}"
                study = json.loads(_get(api))
                assert study["name"] == exp.name and study["trials"], study.keys()
            else:  # TensorBoard: one run per trial directory that has written an event log
                runs = json.loads(_get(url.rstrip("/") + "/data/runs"))
                trials = {p.parent.name for p in exp.glob("trial_*/events.out.tfevents.*")}
                assert runs and set(runs) <= trials, (runs, trials)
        finally:
            assert watcher.stop() in (0, 130, -signal.SIGINT)


def _search_pid(terminal: Terminal, name: str) -> int | None:
    for pid in terminal.descendants():
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [w.decode(errors="replace") for w in argv]
        if "search" in words and name in words and any(w.endswith("genretune") for w in words):
            return pid
    return None


def _reported(exp: Path) -> bool:
    return any(p.stat().st_size for p in exp.glob("trial_*/result.json"))


@pytest.mark.slow
def test_cluster_walkthrough_runs_as_written(tmp_path, isolated_cache):
    prefix = pid_namespace_prefix()
    if prefix is None:
        pytest.skip("needs a PID namespace (unshare): the doc's `ray stop` must end only its Ray")
    assert not _port_taken(RAY_DASHBOARD_PORT), f"port {RAY_DASHBOARD_PORT} is taken"
    blocks = walkthrough_blocks()
    # Ray's socket paths must stay under 108 bytes: pytest's tmp_path is too deep.
    short = Path(tempfile.mkdtemp(prefix="gt-walk-"))
    port = _free_port()
    home = tmp_path / "home"
    home.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "VIRTUAL_ENV"))}
    env.update(
        HOME=str(home),  # one machine: one home, as a shared home directory would be
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        HEAD_IP="127.0.0.1",
        NODE_IP="127.0.0.1",
        RAY_PORT=str(port),
        SHARED=str(short / "shared"),
        RAY_TMPDIR=str(short / "ray"),
        GENRETUNE_CACHE_DIR=str(isolated_cache),
    )
    address = f"127.0.0.1:{port}"
    launch = next(b for b in blocks if b.mode == INTERRUPT)
    exp = Path(env["SHARED"]) / "runs" / _launch_name(launch)
    starts = [b for b in blocks if b.mode == RUN and "ray start" in b.code]
    resume = next(b for b in blocks if b.mode == RUN and "--resume" in b.code)
    stop = next(b for b in blocks if b.mode == RUN and b.code.strip() == "ray stop")
    timings: dict[str, float] = {}
    terminal = Terminal(prefix, env, work, preexec=default_sigint)
    try:
        clock = time.monotonic()
        for block in blocks[: blocks.index(launch)]:
            if block.mode == RUN:
                code, out = terminal.run(block, timeout=180)
                assert code == 0, out[-3000:]
        timings["cluster up (steps 3, 5)"] = time.monotonic() - clock
        assert b"<" in _get(f"http://127.0.0.1:{RAY_DASHBOARD_PORT}/", timeout=60)

        # A driver whose authentication is not the cluster's: one line naming what to set.
        no_auth = {k: v for k, v in env.items() if not k.startswith("RAY_AUTH")}
        refused = launch.code.replace("export RAY_AUTH_MODE=token\n", "")
        refused = refused.replace(exp.name, "refused")
        for driver_env, said in (
            (no_auth, "RAY_AUTH_MODE=token"),
            ({**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "0" * 32}, "is not the cluster"),
        ):
            res = subprocess.run(["bash", "-c", refused], env=driver_env, cwd=work,
                                 capture_output=True, text=True, timeout=300)  # fmt: skip
            lines = res.stderr.strip().splitlines()
            assert res.returncode == 2 and len(lines) == 1, res.stderr[-3000:]
            assert said in lines[0] and address in lines[0], lines[0]
            assert not (exp.parent / "refused").exists()

        clock = time.monotonic()
        terminal.start(launch)
        deadline = time.monotonic() + 300
        while not _reported(exp):
            assert time.monotonic() < deadline, "no trial reported"
            time.sleep(0.5)
        timings["launch to first result (step 6)"] = time.monotonic() - clock
        clock = time.monotonic()
        after = blocks[blocks.index(launch) + 1 :]
        _watch_a_running_search([b for b in after if b.mode in (SECOND, SERVE)], env, work, exp)
        timings["watchers (step 7)"] = time.monotonic() - clock
        pid = _search_pid(terminal, exp.name)
        assert pid is not None, "the search ended before Ctrl-C: make the doc's search longer"
        os.kill(pid, signal.SIGINT)
        code, out = terminal.finish(timeout=180)
        assert code == 130, out[-3000:]
        printed = [line for line in out.splitlines() if line.startswith("genretune search ")]
        assert printed, out[-3000:]
        expected = [_expand(word, env) for word in resume.words()]
        assert shlex.split(printed[-1]) == expected, (printed[-1], expected)
        print(f"printed on Ctrl-C: {printed[-1]}")

        # The cluster goes down: the resume names the address and runs nothing elsewhere.
        code, out = terminal.run(stop, timeout=120)
        assert code == 0, out
        before = {p: p.stat().st_mtime_ns for p in exp.glob("trial_*/result.json")}
        code, out = terminal.run(resume, timeout=120)
        assert code == 2 and len(out.strip().splitlines()) == 1, out
        assert address in out, out
        print(f"resumed with the cluster down: {out.strip()}")
        assert {p: p.stat().st_mtime_ns for p in exp.glob("trial_*/result.json")} == before
        for block in starts:
            code, out = terminal.run(block, timeout=180)
            assert code == 0, out[-3000:]

        clock = time.monotonic()
        code, out = terminal.run(resume, timeout=600)
        assert code == 0, out[-3000:]
        timings["resume to the end (step 9)"] = time.monotonic() - clock
        settings = json.loads((exp / "genretune_search.json").read_text())
        reasons = read_end_reasons(exp)
        assert len(reasons) == settings["num_samples"], reasons
        nodes = set()
        for progress in exp.glob("trial_*/progress.csv"):
            nodes |= set(pd.read_csv(progress)["node_id"])
        assert len(nodes) >= 2, "trials ran on the cluster's nodes, not on one local Ray"

        clock = time.monotonic()
        for block in after[after.index(resume) + 1 :]:
            if block.mode == RUN and block is not stop:
                code, out = terminal.run(block, timeout=300)
                assert code == 0, out[-3000:]
        timings["results, export, retrain (steps 10, 11)"] = time.monotonic() - clock
        assert json.loads((work / "best.json").read_text())
        reports = list((work / "models").glob("*/metrics.json"))
        assert len(reports) == 1 and "test" in json.loads(reports[0].read_text())

        code, out = terminal.run(stop, timeout=120)
        assert code == 0, out

        def ray_left() -> dict[int, str]:
            left = {}
            for pid in terminal.descendants()[1:]:
                try:
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                except OSError:
                    continue  # it ended meanwhile
                if b"ray" in cmdline:
                    left[pid] = cmdline.replace(b"\0", b" ").decode(errors="replace")[:200]
            return left

        # `ray stop` signals Ray's processes and returns: one may take a moment to exit.
        deadline = time.monotonic() + 20
        while ray_left() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not ray_left(), f"ray stop left Ray processes: {ray_left()}"
    finally:
        terminal.close()
        import shutil

        shutil.rmtree(short, ignore_errors=True)
    for step, seconds in timings.items():
        print(f"walkthrough {step}: {seconds:.0f} s")
