"""genretune's code for Ray cluster nodes that do not have it installed.

Ray's `runtime_env` `py_modules` ships a directory as the module of its name, so the packages
are staged under a temporary `genretune/` directory: on the nodes they import as
`genretune.data`, `genretune.model`, ... exactly as on the driver.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

PACKAGES = ("data", "model", "search", "results")
_ROOT = Path(__file__).resolve().parents[1]


def staged_code(packages: tuple[str, ...] = PACKAGES) -> str:
    """Path of a `genretune` directory holding copies of `packages` (removed at exit)."""
    staging = Path(tempfile.mkdtemp(prefix="genretune-code-"))
    atexit.register(shutil.rmtree, staging, ignore_errors=True)
    target = staging / "genretune"
    for name in packages:
        shutil.copytree(
            _ROOT / name,
            target / name,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "deploy"),
        )
    return str(target)
