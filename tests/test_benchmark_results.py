"""Every benchmark result file says how it was made: a top-level `provenance` object with the
command line, the commit, whether the tree had uncommitted changes and each compared
strategy's flags (benchmarks/provenance.py); superseded sets are in results/archive/ and each
is in its index."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
FILES = sorted(RESULTS.rglob("*.json"))  # every set, those of a second task and archived ones


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(RESULTS)))
def test_each_result_file_records_its_provenance(path):
    payload = json.loads(path.read_text())
    p = payload.get("provenance") if isinstance(payload, dict) else None
    assert isinstance(p, dict), f"{path.name}: no top-level provenance object"
    assert isinstance(p.get("argv"), list) and p["argv"], f"{path.name}: provenance.argv"
    assert isinstance(p.get("commit"), str) and len(p["commit"]) == 40, f"{path.name}: commit"
    assert p.get("dirty") in (True, False, None), f"{path.name}: provenance.dirty"
    flags = p.get("strategy_flags", "missing")
    assert flags is None or isinstance(flags, dict), f"{path.name}: provenance.strategy_flags"


def test_every_archived_set_is_in_the_index():
    archive = RESULTS / "archive"
    index = (archive / "README.md").read_text()
    for path in sorted(archive.glob("*.json")):
        assert f"`{path.stem}`" in index, f"{path.name} is not in archive/README.md"


def test_provenance_records_the_command_and_the_commit():
    import subprocess
    import sys

    code = (
        "import json, sys; sys.path.insert(0, 'benchmarks'); sys.argv = ['x.py', '--seeds', '3']\n"
        "from provenance import provenance\n"
        "print(json.dumps(provenance({'a': '--sampler random'})))"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=RESULTS.parents[1], capture_output=True, text=True
    )
    p = json.loads(res.stdout)
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=RESULTS, capture_output=True, text=True
    ).stdout.strip()
    assert p["argv"] == ["x.py", "--seeds", "3"] and p["commit"] == head
    assert p["strategy_flags"] == {"a": "--sampler random"} and isinstance(p["dirty"], bool)


def test_quoted_numbers_are_rendered_from_the_result_files():
    """README.md's and benchmarks/README.md's generated blocks equal what
    benchmarks/headlines.py renders from the JSON (rerun it after a benchmark)."""
    import headlines

    stale = {p.name: headlines.stale_blocks(p) for p in headlines.DOCS}
    assert not any(stale.values()), f"run python benchmarks/headlines.py: {stale}"
    blocks = sum(len(headlines.BLOCK.findall(p.read_text())) for p in headlines.DOCS)
    assert blocks >= 2, "the READMEs quote benchmark numbers through generated blocks"


def test_provenance_is_read_at_start_and_a_rewritten_result_file_is_not_dirt(tmp_path):
    """A benchmark's `dirty` covers code, not its own outputs: a result file an earlier run
    rewrote leaves it clean, a changed source file does not; and the commit is the one the run
    started from, even when a commit lands while it runs."""
    import shutil
    import subprocess
    import sys

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    bench = tmp_path / "benchmarks"
    (bench / "results").mkdir(parents=True)
    shutil.copy(RESULTS.parent / "provenance.py", bench)
    (bench / "results" / "a.json").write_text("{}")
    git("init", "-q")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "x", "--allow-empty")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "start")
    code = (
        "import json, subprocess, sys; sys.path.insert(0, 'benchmarks')\n"
        "import provenance\n"
        "subprocess.run(['git', '-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', "
        "'-q', '--allow-empty', '-m', 'later'], check=True)\n"
        "print(json.dumps(provenance.provenance()))"
    )

    def run() -> dict:
        res = subprocess.run(
            [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True
        )
        assert res.returncode == 0, res.stderr
        return json.loads(res.stdout)

    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True
    ).stdout.strip()
    (bench / "results" / "a.json").write_text('{"rewritten": true}')
    p = run()
    assert p["dirty"] is False and p["commit"] == head
    (bench / "provenance.py").write_text((bench / "provenance.py").read_text() + "\n")
    assert run()["dirty"] is True


def test_a_goal_that_stops_holding_is_reported_not_met(tmp_path, monkeypatch):
    """benchmarks/goals.py reads the result files: one budget where the default's paired CI
    against random-asha reaches 0 turns that goal's row to not met, naming how many cases hold."""
    import shutil

    import goals

    for path in RESULTS.rglob("*.json"):
        target = tmp_path / path.relative_to(RESULTS)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    monkeypatch.setattr(goals, "RESULTS", tmp_path)
    row = next(g for g in goals.rows() if g.goal == "test F1: beats random-asha")
    assert row.met == "met", "the committed results meet this goal on the first task"
    run = json.loads((tmp_path / "simulate_baselines.json").read_text())
    budgets = run["settings"]["budgets"]
    run["strategies"]["default"][str(budgets[0])]["paired_test_f1_diff_vs"]["random-asha"][
        "ci_low"
    ] = -0.001
    (tmp_path / "simulate_baselines.json").write_text(json.dumps(run))
    row = next(g for g in goals.rows() if g.goal == "test F1: beats random-asha")
    assert row.met == f"**not met** ({len(budgets) - 1} of {len(budgets)})"
    assert "beats random-asha (first task, 2 workers)" in goals.unmet_summary()
