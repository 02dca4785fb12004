"""Project-wide contracts: lint, format, and the import direction of design.md."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RUFF = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")


@pytest.mark.parametrize("args", [["check", "."], ["format", "--check", "."]])
def test_ruff(args):
    assert RUFF, "ruff is part of the dev extra"
    res = subprocess.run([RUFF, *args], cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


FORBIDDEN = {
    "data": {"model", "search", "results", "ray", "optuna", "torch"},
    "model": {"search", "results", "ray", "optuna"},
    "results": {"search", "ray.tune.execution"},
}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_import_direction(package):
    """Import every module of a package in a fresh interpreter and look at sys.modules."""
    modules = [
        ".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        for p in (REPO / package).rglob("*.py")
    ]
    code = (
        "import importlib, json, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print(json.dumps(sorted({n.split('.')[0] for n in sys.modules} | set(sys.modules))))"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    loaded = set(json.loads(res.stdout))
    assert not (FORBIDDEN[package] & loaded), FORBIDDEN[package] & loaded


def test_genretune_train_does_not_import_ray():
    code = "import sys; import search.cli, model.standalone; print('ray' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert res.stdout.strip() == "False", res.stderr
