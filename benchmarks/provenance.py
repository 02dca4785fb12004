"""What every benchmark result file records at its top level: how it was made.

    {"provenance": {"argv": [...], "commit": "<hash>", "dirty": false,
                    "strategy_flags": {"<strategy>": "<genretune search flags>", ...}}}

`commit` and `dirty` are read when the benchmark starts (it imports this module first), not when
it writes: a run that writes after every seed records the code it ran, not a later commit.
`dirty` says the working tree then had uncommitted changes to tracked files outside
benchmarks/results/ (the commit alone does not then reproduce it; a result file rewritten by
an earlier run is an output, not code); `strategy_flags` holds each compared strategy's flags as
resolved for the run (null for benchmarks that compare no strategies).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _git(*args: str) -> str:
    try:
        res = subprocess.run(["git", *args], capture_output=True, text=True, cwd=HERE)
    except OSError:
        return ""
    return res.stdout.strip() if res.returncode == 0 else ""


# Outputs, not code: a result file rewritten by an earlier run does not make a run dirty.
_OUTPUTS = ":(exclude,top)benchmarks/results"
AT_START = {
    "commit": _git("rev-parse", "HEAD") or "unknown",
    "dirty": bool(_git("status", "--porcelain", "--untracked-files=no", "--", ":/", _OUTPUTS)),
}


def provenance(strategy_flags: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    """The command line, the commit, whether the tree had changes not in it, the strategies'
    flags, and anything else a benchmark adds (e.g. the bank's own provenance)."""
    return {
        "argv": list(sys.argv),
        **AT_START,
        "strategy_flags": dict(strategy_flags) if strategy_flags is not None else None,
        **extra,
    }
