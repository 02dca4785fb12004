"""The code blocks of docs/cluster.md's walkthrough, and a shell that runs them as a user would:
one terminal (a bash whose exports carry from block to block) inside a PID namespace of its
own, so that the doc's `ray stop` ends this cluster's Ray processes and no one else's."""

from __future__ import annotations

import os
import queue
import re
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "cluster.md"
SECTION = "## From nothing to a result: a walkthrough"

# How the test treats a block, from the HTML comment before it (invisible on the page).
RUN, SKIP, INTERRUPT, SECOND, SERVE = "run", "skip", "interrupt", "second", "serve"
_MODES = {
    "skip": SKIP,
    "interrupt": INTERRUPT,
    "second terminal, serves a page": SERVE,
    "second terminal": SECOND,
}
_BLOCK = re.compile(r"(?:<!-- walkthrough: ([^(>]*?)\s*(?:\(.*?\))? -->\n)?```sh\n(.*?)```", re.S)


@dataclass(frozen=True)
class Block:
    mode: str
    code: str

    def words(self) -> list[str]:
        """The block's command as words (one command, `\\` continuations joined)."""
        import shlex

        return shlex.split(self.code.replace("\\\n", " "))


def walkthrough_blocks(text: str | None = None) -> list[Block]:
    text = DOC.read_text() if text is None else text
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    section = text[start : end if end != -1 else len(text)]
    blocks = []
    for comment, code in _BLOCK.findall(section):
        mode = _MODES[comment] if comment else RUN
        blocks.append(Block(mode, code))
    return blocks


def pid_namespace_prefix() -> list[str] | None:
    """`unshare` arguments that give a command a PID namespace with its own /proc (as root, or
    through a user namespace), or None where neither is permitted."""
    for prefix in (
        ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"],
        ["unshare", "--user", "--map-root-user", "--pid", "--fork", "--mount-proc", "--kill-child"],
    ):
        try:
            ok = subprocess.run([*prefix, "true"], capture_output=True, timeout=30).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            ok = False
        if ok:
            return prefix
    return None


class Terminal:
    """A bash in a PID namespace, fed blocks one at a time. A block is sourced from a file (its
    exports stay in the shell; its commands cannot read the script as their input)."""

    _DONE = "__walkthrough_done__"

    def __init__(self, prefix: list[str], env: dict[str, str], cwd: Path, preexec=None):
        self.cwd = cwd
        self.proc = subprocess.Popen(
            [*prefix, "bash", "--noprofile", "--norc"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=preexec,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self._count = 0

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put("")  # the shell is gone

    def start(self, block: Block) -> None:
        self._count += 1
        script = self.cwd / f".block-{self._count}.sh"
        script.write_text(block.code)
        self.proc.stdin.write(f"source {script} < /dev/null\necho {self._DONE} $?\n")
        self.proc.stdin.flush()

    def finish(self, timeout: float) -> tuple[int, str]:
        """Wait for the block started last: its exit code and output (stdout and stderr)."""
        deadline = time.monotonic() + timeout
        out: list[str] = []
        while True:
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                tail = "".join(out)[-3000:]
                raise AssertionError(f"still running after {timeout} s:\n{tail}") from None
            if line == "":
                raise AssertionError(f"the shell ended:\n{''.join(out)[-3000:]}")
            if line.startswith(self._DONE):
                return int(line.split()[1]), "".join(out)
            out.append(line)

    def run(self, block: Block, timeout: float = 300) -> tuple[int, str]:
        self.start(block)
        return self.finish(timeout)

    def descendants(self) -> list[int]:
        """Host pids of every process in this terminal (the namespace's), the shell first."""
        from helpers import descendant_pids

        return descendant_pids(self.proc.pid)

    def close(self) -> None:
        """End the shell; its namespace, and every process still in it, ends with it."""
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            import signal

            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
