"""What every benchmark result file records at its top level: how it was made.

    {"provenance": {"argv": [...], "commit": "<hash>", "dirty": false,
                    "strategy_flags": {"<strategy>": "<genretune search flags>", ...}}}

`dirty` says the working tree had uncommitted changes to tracked files when it ran (the commit
alone does not then reproduce it); `strategy_flags` holds each compared strategy's flags as
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


def provenance(strategy_flags: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    """The command line, the commit, whether the tree had changes not in it, the strategies'
    flags, and anything else a benchmark adds (e.g. the bank's own provenance)."""
    return {
        "argv": list(sys.argv),
        "commit": _git("rev-parse", "HEAD") or "unknown",
        "dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "strategy_flags": dict(strategy_flags) if strategy_flags is not None else None,
        **extra,
    }
