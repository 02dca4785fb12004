"""The benchmark numbers quoted in README.md and benchmarks/README.md, rendered from the result
files: nothing there is retyped by hand.

A quoted block sits between `<!-- generated: NAME -->` and `<!-- /generated -->`; this script
rewrites each from benchmarks/results/ (`python benchmarks/headlines.py`), and `--check` exits 1
naming the blocks that differ from what the result files say (a test runs it).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DOCS = (HERE.parent / "README.md", HERE / "README.md", HERE / "tables.md")
BLOCK = re.compile(r"(<!-- generated: ([\w-]+) -->\n)(.*?)(<!-- /generated -->)", re.S)


def _load(name: str) -> dict:
    return json.loads((RESULTS / f"{name}.json").read_text())


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def readme_scale() -> str:
    s = _load("scale")
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
    return scale.report(_load("scale")).split("\n", 2)[2].strip() + "\n"


def _signed(x: float) -> str:
    return f"{x:+.3f}"


def _ci(v: dict) -> str:
    return f"{_signed(v['median'])} [{_signed(v['ci_low'])}, {_signed(v['ci_high'])}]"


def _budgets(run: dict) -> list[str]:
    return [str(b) for b in run["settings"]["budgets"]]


def readme_simulated() -> str:
    runs = {w: _load(f"simulate{'' if w == 2 else f'_measures_workers{w}'}") for w in (2, 8, 32)}
    two = runs[2]
    budgets = _budgets(two)
    default = two["strategies"]["default"]

    def fractions(run: dict, strategy: str, key: str) -> str:
        return ", ".join(_pct(run["strategies"][strategy][b][key]["median"]) for b in budgets)

    gains_everywhere = all(
        run["strategies"]["default"][b]["paired_test_f1_diff_vs_random_asha"]["ci_low"] > 0
        for run in runs.values()
        for b in _budgets(run)
    )
    third = [default[b]["paired_test_f1_at_third_vs_random_fifo_final"]["median"] for b in budgets]
    wide = [
        run["strategies"]["default"][b]["fraction_to_random_final"]["median"]
        for w, run in runs.items()
        if w > 2
        for b in _budgets(run)
    ]
    verdict = "beats" if gains_everywhere else "does not beat everywhere"
    own = fractions(two, "default", "fraction_to_random_final")
    alike = fractions(two, "default", "fraction_to_random_final_tuned_rule")
    return (
        f"- Simulated ({two['bank']['runs']} recorded learning curves, "
        f"{two['settings']['seeds']} paired seeds per comparison): the default search "
        f"{verdict} random search with ASHA on test F1 at every budget measured "
        f"({', '.join(budgets)} trial-epochs) with 2, 8 and 32 workers; with 2 workers by "
        + ", ".join(_ci(default[b]["paired_test_f1_diff_vs_random_asha"]) for b in budgets)
        + f". Its pick after a third of the budget scores as well as random search's final "
        f"pick (paired medians {_signed(min(third))} to {_signed(max(third))}); it reaches "
        f"random search's final best validation score at {own} of the budget on its own "
        f"objective, {alike} measured at one rule for all searches (random search with ASHA: "
        f"{fractions(two, 'random-asha', 'fraction_to_random_final_tuned_rule')}); with 8-32 "
        f"workers {_pct(min(wide))}-{_pct(max(wide))} on its own objective.\n"
    )


def readme_real() -> str:
    return _real_line(
        "search_efficiency", "simulate", "simulate_noise_model", "Real searches"
    ) + _real_line(
        "task2/search_efficiency",
        "simulate_task2",
        "simulate_task2_noise_model",
        "On the second task, real searches",
    )


def _real_line(real: str, simulated_on: str, corrected: str, label: str) -> str:
    """The default's real margin over random-asha (paired by seed) beside the simulator's,
    and the simulator's with its corrected noise model where that was run."""
    from hposim.stats import median_ci

    s = _load(real)["summary"]
    table = s["table"]
    diffs = [d for d in table["default"]["paired_test_f1_diff_vs_random_asha"] if d is not None]
    gain = median_ci(diffs)
    ahead = sum(d > 0 for d in diffs)
    budget = str(s["budget_epochs"])
    simulated = _load(simulated_on)["strategies"]["default"][budget]
    also = ""
    if (RESULTS / f"{corrected}.json").exists():
        by_quality = _load(corrected)["strategies"]["default"][budget]
        also = (
            f"; with noise by quality and training seed "
            f"{_ci(by_quality['paired_test_f1_diff_vs_random_asha'])}"
        )
    return (
        f"- {label} ({len(diffs)} seeds, {s['budget_epochs']} trial-epochs, "
        "`benchmarks/search_efficiency.py`): the default's pick against random search with "
        f"ASHA's: {_ci(gain)} test F1 (median, "
        f"95% CI), ahead in {ahead} of {len(diffs)} seeds (simulated "
        f"{_ci(simulated['paired_test_f1_diff_vs_random_asha'])}{also}).\n"
    )


def noise_models() -> str:
    """Per task: the default's real margin over random-asha beside the simulator's prediction
    under each noise model (same budget, 2 workers)."""
    import goals

    from hposim.stats import median_ci

    lines = []
    for label, simulated, _, real in goals.BANKS:
        s = _load(real)["summary"]
        budget = str(s["budget_epochs"])
        table = s["table"]["default"]["paired_test_f1_diff_vs_random_asha"]
        diffs = [d for d in table if d is not None]
        predicted = []
        for model, name in (
            ("pooled", simulated),
            ("by-quality-and-seed", goals.CORRECTED[simulated]),
        ):
            if (RESULTS / f"{name}.json").exists():
                run = _load(name)["strategies"]["default"][budget]
                predicted.append(f"{_ci(run['paired_test_f1_diff_vs']['random-asha'])} ({model})")
        lines.append(
            f"- {label.capitalize()}, {budget} trial-epochs: real {_ci(median_ci(diffs))} "
            f"({len(diffs)} seeds); simulated {', '.join(predicted)}.\n"
        )
    for label, simulated, _, _ in goals.BANKS:
        name = f"{goals.CORRECTED[simulated]}_workers8"
        if (RESULTS / f"{name}.json").exists():
            run = _load(name)
            margins = [
                run["strategies"]["default"][b]["paired_test_f1_diff_vs"]["random-asha"]
                for b in _budgets(run)
            ]
            lines.append(
                f"- {label.capitalize()}, 8 workers, by-quality-and-seed "
                f"({', '.join(_budgets(run))} trial-epochs): "
                f"{', '.join(_ci(m) for m in margins)} (`{name}.json`).\n"
            )
    return "".join(lines)


def readme_trial_speed() -> str:
    t = _load("trial_speed")
    return (
        f"- A trial in Ray trains as fast as `genretune train` ({t['throughput']['ratio']:.3f}x), "
        f"a search adds {_pct(t['overhead']['overhead_ratio'] - 1)} over its trials' own time, "
        f"and data grows a trial's memory by "
        f"{_pct(t['memory']['uss_growth_over_feature_growth'])} of its size "
        "(`benchmarks/trial_speed.py`).\n"
    )


def readme_bounds() -> str:
    a = _load("all_knowing")
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


def bounds_both_banks() -> str:
    """The default against the first-wave bound at 8 and 32 workers on both banks: its budget
    fraction to random-fifo's final best over the bound's, and its pick's test F1 minus the
    bound's pick's (medians over the seeds)."""
    bound = "first wave, then all-knowing"
    lines = []
    for label, name in (("the bank the default was chosen on", "all_knowing"),
                        ("the second task", "all_knowing_task2")):  # fmt: skip
        summary = _load(name)["summary"]
        for workers in ("8", "32"):
            ratios, gaps = [], []
            for budget in sorted(summary[workers], key=int):
                r = summary[workers][budget]
                own = r["own objective"]
                ratios.append(f"{own['default']['median'] / own[bound]['median']:.2f}x ({budget})")
                pick = r["test F1 of the pick"]
                gaps.append(
                    f"{_signed(pick['default']['median'] - pick[bound]['median'])} ({budget})"
                )
            lines.append(
                f"- On {label}, {workers} workers: the default's budget fraction is "
                f"{', '.join(ratios)} the first-wave bound's; its pick's test F1 minus the "
                f"bound's pick's: {', '.join(gaps)} (`{name}.json`).\n"
            )
    return "".join(lines)


SNIPPETS: dict[str, Callable[[], str]] = {
    "readme-bounds": readme_bounds,
    "bounds-both-banks": bounds_both_banks,
    "readme-simulated": readme_simulated,
    "readme-real": readme_real,
    "readme-trial-speed": readme_trial_speed,
    "readme-scale": readme_scale,
    "scale-tables": scale_tables,
}


BASELINE_RUNS = (("the bank the default was chosen on", "simulate_baselines"),
                 ("a second task, never used to choose", "simulate_task2"))  # fmt: skip


def baselines_table() -> str:
    """Per bank, worker count and budget: each strategy's pick on test F1 and the default's
    paired difference with it, and how soon each reaches random-fifo's final best (one rule
    for all, in budget and in compute-seconds)."""
    lines = []
    runs = [*BASELINE_RUNS, *((label, f"{name}_workers8") for label, name in BASELINE_RUNS)]
    for label, name in runs:
        run = _load(name)
        st, settings = run["strategies"], run["settings"]
        lines += [
            f"**{settings['bank']}** ({label}; {run['bank']['runs']} runs, "
            f"{settings['seeds']} paired seeds, {settings['workers']} workers):",
            "",
            "| budget | strategy | test F1 | default - it (paired) | to random-fifo's best: "
            "budget | compute-seconds |",
            "|---|---|---|---|---|---|",
        ]
        for b in _budgets(run):
            unit = f"{b[:-1]} epochs' compute-s" if b.endswith("s") else f"{b} trial-epochs"
            for strategy, r in st.items():
                diff = st["default"][b]["paired_test_f1_diff_vs"].get(strategy)
                reach = r[b]["fraction_to_random_final_tuned_rule"]["median"]
                compute = r[b]["compute_to_random_final_tuned_rule"]["median"]
                lines.append(
                    f"| {unit} | {strategy} | {r[b]['test_f1']['median']:.3f} | "
                    f"{_ci(diff) if diff else ''} | {_pct(reach) if reach else 'never'} | "
                    f"{_pct(compute) if compute else 'never'} |"
                )
        lines.append("")
    return "\n".join(lines)


def readme_baselines() -> str:
    import goals

    out = []
    for label, name in BASELINE_RUNS:
        run = _load(name)
        st = run["strategies"]["default"]
        budgets = _budgets(run)
        others = [o for o in run["strategies"] if o not in ("default", "random-fifo")]
        said = []
        for other in others:
            diffs = [st[b]["paired_test_f1_diff_vs"][other] for b in budgets]
            verdicts = " / ".join(sorted({goals.verdict(d) for d in diffs}))
            medians = [d["median"] for d in diffs]
            said.append(f"{verdicts} {other} ({_signed(min(medians))} to {_signed(max(medians))})")
        alike = ", ".join(
            f"{_pct(st[b]['fraction_to_random_final_tuned_rule']['median'])} ({b})" for b in budgets
        )
        on_test = ", ".join(
            f"{_pct(st[b]['fraction_to_random_final_test']['median'])} ({b})" for b in budgets
        )
        out.append(
            f"- On {label} ({run['settings']['bank']}, {run['settings']['seeds']} paired seeds, "
            f"{run['settings']['workers']} workers, budgets in trial-epochs and, marked s, in "
            f"compute-seconds): on test F1 the default's pick {', '.join(said)} (paired medians); "
            "measured alike (one "
            f"rule for all) it reaches random search's final best validation F1 at {alike} of "
            f"the budget, and its pick reaches the test F1 of random search's final pick at "
            f"{on_test} (`benchmarks/README.md`: Baselines and a second task).\n"
        )
    return "".join(out)


def goals_table() -> str:
    import goals

    return goals.table()


def readme_goals() -> str:
    import goals

    rows = goals.rows()
    met = sum(g.met == "met" for g in rows)
    return (
        f"- The default's goals on both tasks, each per bank and worker count "
        f"(`benchmarks/README.md`: Goals): {met} of {len(rows)} met; not met: "
        f"{goals.unmet_summary() or 'none'}.\n"
    )


SNIPPETS.update({
    "readme-baselines": readme_baselines, "baselines-tables": baselines_table,
    "goals": goals_table, "readme-goals": readme_goals, "noise-models": noise_models,
})  # fmt: skip


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
