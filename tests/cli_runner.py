"""Run `genretune` in a fresh process without paying its imports every time.

A bad-input table of 150 commands spends most of its time importing torch, Ray and pandas in
each new interpreter. Here each command still runs in a process of its own (its own cwd,
stdout, stderr and exit code, nothing shared with pytest), forked from a server process that
has imported the CLI once and done nothing else (no Ray, no torch threads): multiprocessing's
forkserver. `test_bad_input.py` checks that a few commands end exactly as they do through the
installed `genretune` script.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from dataclasses import dataclass
from pathlib import Path

PRELOAD = ["genretune.search.cli", "torch", "pandas", "cli_runner"]
_CONTEXT: list = []


@dataclass(frozen=True)
class Completed:
    returncode: int
    stdout: str
    stderr: str


def _context():
    if not _CONTEXT:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        _CONTEXT.append(ctx)
    return _CONTEXT[0]


def _child(argv: list[str], cwd: str, out: str, err: str) -> None:
    os.chdir(cwd)
    for fd, path in ((1, out), (2, err)):
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(handle, fd)
        os.close(handle)
    sys.argv = ["genretune", *argv]
    from genretune.search.cli import main

    try:
        code = main(argv)
    finally:
        # A forked child ends with os._exit, so atexit does not stop a Ray it started.
        ray = sys.modules.get("ray")
        if ray is not None and ray.is_initialized():
            ray.shutdown()
    sys.exit(code)  # as the console script does


def run_cli(argv: list[str], cwd: Path, scratch: Path, timeout: float = 300) -> Completed:
    """`genretune ARGV` run in cwd; its output is kept in files under scratch."""
    out, err = scratch / "cli.stdout", scratch / "cli.stderr"
    proc = _context().Process(target=_child, args=(list(argv), str(cwd), str(out), str(err)))
    proc.start()
    proc.join(timeout)
    if proc.is_alive():
        proc.kill()
        proc.join()
        raise TimeoutError(f"genretune {' '.join(argv)}: still running after {timeout:.0f}s")
    return Completed(proc.exitcode, out.read_text(), err.read_text())
