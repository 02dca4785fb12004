"""The benchmark numbers quoted in README.md and benchmarks/README.md, rendered from the result
files: nothing there is retyped by hand.

A quoted block sits between `<!-- generated: NAME -->` and `<!-- /generated -->`; this script
rewrites each from benchmarks/results/ (`python benchmarks/headlines.py`), and `--check` exits 1
naming the blocks that differ from what the result files say (a test runs it).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path

from goals import budgets_of, ci_text, load, signed

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DOCS = (HERE.parent / "README.md", HERE / "README.md", HERE / "tables.md")
BLOCK = re.compile(r"(<!-- generated: ([\w-]+) -->\n)(.*?)(<!-- /generated -->)", re.S)


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def readme_scale() -> str:
    s = load("scale")
    ray, searcher, e = s["ray"], s["searcher"], s["experiment"]
    readers = [e["results_s"], e["export_s"], e["pareto_s"], e["load_s"]]
    return (
        f"- At scale (`benchmarks/scale.py`): {ray['trials']:,} trials, {ray['concurrent']} at "
        f"once, take {ray['wall_over_ideal']:.2f}x the ideal wall time (trials x their own time "
        f"/ {ray['concurrent']}); TPE's suggest takes {searcher['1000']['suggest_ms']['p95']:.0f} "
        f"ms (p95) at 1,000 trials and {searcher['3000']['suggest_ms']['p95']:.0f} ms at 3,000; "
        f"`results`, `export`, `results --pareto` and the Python loader read a finished "
        f"{e['trials']:,}-trial experiment in {min(readers):.1f}-{max(readers):.1f} s. The driver "
        f"needs {s['driver_rss_growth_mb']} MB more memory for {ray['trials']:,} trials (Ray's "
        "per-trial state and result grid).\n"
    )


def scale_tables() -> str:
    import importlib

    scale = importlib.import_module("scale")
    return scale.report(load("scale")).split("\n", 2)[2].strip() + "\n"


def readme_simulated() -> str:
    runs = {w: load(f"simulate{'' if w == 2 else f'_measures_workers{w}'}") for w in (2, 8, 32)}
    two = runs[2]
    budgets = budgets_of(two)
    default = two["strategies"]["default"]

    def fractions(run: dict, strategy: str, key: str) -> str:
        return ", ".join(_pct(run["strategies"][strategy][b][key]["median"]) for b in budgets)

    gains_everywhere = all(
        run["strategies"]["default"][b]["paired_test_f1_diff_vs_random_asha"]["ci_low"] > 0
        for run in runs.values()
        for b in budgets_of(run)
    )
    third = [default[b]["paired_test_f1_at_third_vs_random_fifo_final"]["median"] for b in budgets]
    wide = [
        run["strategies"]["default"][b]["fraction_to_random_final"]["median"]
        for w, run in runs.items()
        if w > 2
        for b in budgets_of(run)
    ]
    verdict = "beats" if gains_everywhere else "does not beat everywhere"
    own = fractions(two, "default", "fraction_to_random_final")
    alike = fractions(two, "default", "fraction_to_random_final_tuned_rule")
    return (
        f"- Simulated ({two['bank']['runs']} recorded learning curves, "
        f"{two['settings']['seeds']} paired seeds per comparison): the default search "
        f"{verdict} random search with ASHA on test F1 at every budget measured "
        f"({', '.join(budgets)} trial-epochs) with 2, 8 and 32 workers; with 2 workers by "
        + ", ".join(ci_text(default[b]["paired_test_f1_diff_vs_random_asha"]) for b in budgets)
        + f". Its pick after a third of the budget scores as well as random search's final "
        f"pick (paired medians {signed(min(third))} to {signed(max(third))}); it reaches "
        f"random search's final best validation score at {own} of the budget on its own "
        f"objective, {alike} measured at one rule for all searches (random search with ASHA: "
        f"{fractions(two, 'random-asha', 'fraction_to_random_final_tuned_rule')}); with 8-32 "
        f"workers {_pct(min(wide))}-{_pct(max(wide))} on its own objective.\n"
    )


def readme_trial_speed() -> str:
    t = load("trial_speed")
    return (
        f"- A trial in Ray trains as fast as `genretune train` ({t['throughput']['ratio']:.3f}x), "
        f"a search adds {_pct(t['overhead']['overhead_ratio'] - 1)} over its trials' own time, "
        f"and data grows a trial's memory by "
        f"{_pct(t['memory']['uss_growth_over_feature_growth'])} of its size "
        "(`benchmarks/trial_speed.py`).\n"
    )


def readme_bounds() -> str:
    a = load("all_knowing")
    summary, settings = a["summary"], a["settings"]
    base, oracle = settings["baseline_test_f1"], settings["oracle_test_f1"]
    budgets = [str(b) for b in settings["budgets"]]

    def bound(workers: str, budget: str) -> float:
        return summary[workers][budget]["own objective"]["first wave, then all-knowing"]["median"]

    at32 = [bound("32", b) for b in budgets]
    pick = summary["32"][budgets[-1]]["test F1 of the pick"]

    def closed(search: str) -> str:
        return _pct((pick[search]["median"] - base) / (oracle - base))

    return (
        "- No search that proposes its first wave of trials before any result exists is "
        "expected to do much better with many workers: given perfect proposals from its second "
        f"wave on it would still need {_pct(bound('8', budgets[0]))} of the budget at 8 workers "
        f"and {budgets[0]} trial-epochs and {_pct(min(at32))}-{_pct(max(at32))} at 32 "
        f"(`benchmarks/all_knowing.py`); with 32 workers and {budgets[-1]} trial-epochs even a "
        "search that knows every configuration's curve in advance picks a configuration that "
        f"closes {closed('all-knowing')} of the gap from the baseline's test F1 to the best "
        f"configuration's (the default: {closed('default')}). Give a cluster a budget of "
        "several trials per worker.\n"
    )


def _two_tasks(name: str) -> Callable[[], str]:
    """A renderer of two_tasks.py (the default across both tasks), imported when rendered."""

    def render() -> str:
        import two_tasks

        return two_tasks.RENDERERS[name]()

    return render


SNIPPETS: dict[str, Callable[[], str]] = {
    "readme-bounds": readme_bounds,
    "readme-simulated": readme_simulated,
    "readme-trial-speed": readme_trial_speed,
    "readme-scale": readme_scale,
    "scale-tables": scale_tables,
}


SNIPPETS.update({name: _two_tasks(name) for name in (
    "readme-real", "noise-models", "bounds-both-banks", "readme-baselines", "baselines-tables",
    "goals", "readme-goals", "variants-workers8",
)})  # fmt: skip


def rendered(text: str) -> str:
    """`text` with every generated block rendered from the result files."""

    def one(match: re.Match) -> str:
        name = match.group(2)
        if name not in SNIPPETS:
            raise SystemExit(f"unknown generated block {name!r} (known: {', '.join(SNIPPETS)})")
        return match.group(1) + SNIPPETS[name]() + match.group(4)

    return BLOCK.sub(one, text)


def stale_blocks(path: Path) -> list[str]:
    """Names of the generated blocks of `path` that differ from their rendering."""
    text = path.read_text()
    now = {m.group(2): m.group(0) for m in BLOCK.finditer(rendered(text))}
    return [m.group(2) for m in BLOCK.finditer(text) if now[m.group(2)] != m.group(0)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only say which blocks are stale")
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    stale = {path: stale_blocks(path) for path in DOCS}
    if args.check:
        for path, names in stale.items():
            for name in names:
                where = path.relative_to(HERE.parent)
                print(f"{where}: block {name} differs from the result files")
        return 1 if any(stale.values()) else 0
    for path, names in stale.items():
        if names:
            path.write_text(rendered(path.read_text()))
            print(f"{path.relative_to(HERE.parent)}: rewrote {', '.join(names)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
