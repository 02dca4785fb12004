"""Project-wide contracts: lint, format, and the import direction (README, "Layout")."""

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


G = "genretune."
FORBIDDEN = {
    "data": {G + "model", G + "search", G + "results", "ray", "optuna", "torch"},
    "model": {G + "search", G + "results", "ray", "optuna"},
    "results": {G + "search", "ray.tune.execution"},
}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_import_direction(package):
    """Import every module of a package in a fresh interpreter and look at sys.modules."""
    modules = [
        "genretune." + ".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        for p in (REPO / package).rglob("*.py")
        if "toplevel" not in p.parts  # the package genretune itself (test below)
    ]
    code = (
        "import importlib, json, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "top = {'.'.join(n.split('.')[:2]) for n in sys.modules}\n"
        "print(json.dumps(sorted({n.split('.')[0] for n in sys.modules} | top)))"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    loaded = set(json.loads(res.stdout))
    assert not (FORBIDDEN[package] & loaded), FORBIDDEN[package] & loaded


def test_the_modules_below_every_subpackage_import_none_of_them():
    """genretune.errors and genretune.output_files (model/toplevel/) are used by every layer."""
    code = (
        "import json, sys\n"
        "import genretune.errors, genretune.output_files\n"
        "print(json.dumps(sorted({'.'.join(n.split('.')[:2]) for n in sys.modules})))"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    loaded = set(json.loads(res.stdout))
    below = {G + "data", G + "model", G + "search", G + "results", "ray", "optuna", "torch"}
    assert not (below & loaded), below & loaded


@pytest.mark.parametrize("package", ["data", "model"])
def test_no_late_import_crosses_the_direction_either(package):
    """Imports inside functions too (test_import_direction sees only what importing does):
    data/ never imports Ray, Optuna or torch, model/ never Ray or Optuna."""
    import ast

    third_party = {n for n in FORBIDDEN[package] if not n.startswith(G)}
    found = []
    for path in sorted((REPO / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and not node.level
                else []
            )
            found += [
                f"{path.relative_to(REPO)}:{node.lineno} {n}"
                for n in names
                if n.split(".")[0] in third_party
            ]
    assert not found, found


def test_genretune_train_does_not_import_ray():
    code = (
        "import sys; import genretune.search.cli, genretune.model.training_run; "
        "print('ray' in sys.modules)"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert res.stdout.strip() == "False", res.stderr


def test_api_and_cli_work_from_a_project_folder_with_data_dir_and_model_py(tmp_path):
    """The packages install as genretune.*: a user's data/ directory or model.py in the
    working directory must not shadow them."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "__init__.py").write_text("raise ImportError('the user data/ dir')\n")
    (tmp_path / "model.py").write_text("raise ImportError('the user model.py')\n")
    (tmp_path / "results").mkdir()
    code = (
        "from genretune.results.experiment import load_experiment\n"
        "from genretune.model.training import fit\n"
        "from genretune.data import load_dataset\n"
        "print('ok')\n"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr
    exe = Path(sys.executable).parent / "genretune"
    res = subprocess.run(
        [str(exe), "data", "stats", "--synthetic-scale", "0.01"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    assert "genres" in res.stdout.lower()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "model.py", "results"]
