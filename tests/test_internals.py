"""The private parts of Ray and Optuna genretune relies on are all there in the installed
releases (results/internals.py): an upgrade that removes one fails here, in one line naming
it, instead of in the middle of a user's search."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from genretune.results.internals import missing_internals

REPO = Path(__file__).resolve().parents[1]
DOOR = REPO / "results" / "internals.py"


def test_every_internal_genretune_uses_is_there():
    missing = missing_internals()
    assert not missing, "Ray/Optuna internals gone: " + ", ".join(missing)


@pytest.mark.parametrize(
    ("owner", "name", "named"),
    [
        ("ray.tune.ExperimentAnalysis", "_fetch_trial_dataframes", "_fetch_trial_dataframes"),
        ("ray.tune.schedulers.async_hyperband._Bracket", "cutoff", "_Bracket.cutoff"),
    ],
)
def test_a_removed_internal_is_named(monkeypatch, owner, name, named):
    import importlib

    module, _, cls = owner.rpartition(".")
    monkeypatch.delattr(getattr(importlib.import_module(module), cls), name)
    assert any(named in m for m in missing_internals())


def _private_uses(path: Path) -> list[str]:
    """Reads of `x._name` attributes that are not the module's own: not a function, class or
    module-level name it defines, nor an attribute it assigns on `self` (what a subclass of a
    Ray or Optuna class reads of its parent's private state shows up here too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = list(ast.walk(tree))
    own = {n.name for n in nodes if isinstance(n, ast.FunctionDef | ast.ClassDef)}
    for n in nodes:
        targets = n.targets if isinstance(n, ast.Assign) else [n.target] if isinstance(
            n, ast.AnnAssign | ast.AugAssign) else []  # fmt: skip
        for t in targets:
            if isinstance(t, ast.Name):
                own.add(t.id)
            elif isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name):
                own.add(t.attr)
    uses = []
    for node in nodes:
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and node.attr not in own
        ):
            uses.append(f"{path.relative_to(REPO)}:{node.lineno} .{node.attr}")
        if isinstance(node, ast.ImportFrom) and node.module and "._" in f".{node.module}":
            if node.module.split(".")[0] in ("ray", "optuna"):
                uses.append(f"{path.relative_to(REPO)}:{node.lineno} {node.module}")
    return uses


# Private attributes of other libraries, or of genretune's own objects, read outside the door
# on purpose (argparse keeps its actions private; the rest are genretune's own classes).
ALLOWED = {"_actions", "_SubParsersAction", "_exit", "_held"}


def test_no_ray_or_optuna_internal_is_used_outside_the_door():
    found = []
    for folder in ("data", "model", "results", "search"):
        for path in sorted((REPO / folder).rglob("*.py")):
            if path != DOOR:
                found += [u for u in _private_uses(path) if u.rsplit(".", 1)[-1] not in ALLOWED]
    assert not found, "outside results/internals.py: " + "; ".join(found)
