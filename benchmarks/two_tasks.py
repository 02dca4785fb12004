"""The default search across both tasks (the bank it was chosen on and a second one, never
used to choose): the blocks of benchmarks/README.md and tables.md that headlines.py renders
from the baselines, bounds and real-search result files, and the goals checked on them
(goals.py)."""

from __future__ import annotations

import goals
from goals import budgets_of, ci_text, load, signed


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _real_margin(real: str) -> tuple[dict, list[float], str]:
    """The default's paired test-F1 margins over random-asha in real searches: (median and
    CI, the per-seed margins, the budget)."""
    from hposim.stats import median_ci

    s = load(real)["summary"]
    diffs = [
        d for d in s["table"]["default"]["paired_test_f1_diff_vs_random_asha"] if d is not None
    ]
    return median_ci(diffs), diffs, str(s["budget_epochs"])


def _predicted(name: str, budget: str) -> dict:
    return load(name)["strategies"]["default"][budget]["paired_test_f1_diff_vs"]["random-asha"]


def readme_real() -> str:
    """Per task: the default's real margin over random-asha beside the simulator's prediction
    (and the pooled noise model's of earlier result sets)."""
    lines = []
    for label, simulated, _, real in goals.BANKS:
        gain, diffs, budget = _real_margin(real)
        lead = "Real searches" if label == "first task" else "On the second task, real searches"
        lines.append(
            f"- {lead} ({len(diffs)} seeds, {budget} trial-epochs, "
            "`benchmarks/search_efficiency.py`): the default's pick against random search with "
            f"ASHA's: {ci_text(gain)} test F1 (median, 95% CI), ahead in "
            f"{sum(d > 0 for d in diffs)} of {len(diffs)} seeds (simulated "
            f"{ci_text(_predicted(simulated, budget))}; with the pooled noise model of earlier "
            f"result sets {ci_text(_predicted(goals.POOLED[simulated], budget))}).\n"
        )
    return "".join(lines)


def noise_models() -> str:
    """Per task: the default's real margin over random-asha beside the simulator's prediction
    under each noise model (same budget, 2 workers), then the current model's at 8 workers."""
    lines = []
    for label, simulated, _, real in goals.BANKS:
        gain, diffs, budget = _real_margin(real)
        lines.append(
            f"- {label.capitalize()}, {budget} trial-epochs: real {ci_text(gain)} ({len(diffs)} "
            f"seeds); simulated {ci_text(_predicted(goals.POOLED[simulated], budget))} (pooled), "
            f"{ci_text(_predicted(simulated, budget))} (by-quality-and-seed).\n"
        )
    for label, simulated, _, _ in goals.BANKS:
        name = f"{simulated}_workers8"
        run = load(name)
        budgets = [b for b in budgets_of(run) if not b.endswith("s")]
        lines.append(
            f"- {label.capitalize()}, 8 workers, by-quality-and-seed ({', '.join(budgets)} "
            f"trial-epochs): {', '.join(ci_text(_predicted(name, b)) for b in budgets)} "
            f"(`{name}.json`).\n"
        )
    return "".join(lines)


def bounds_both_banks() -> str:
    """The default against the first-wave bound at 8 and 32 workers on both banks: its budget
    fraction to random-fifo's final best over the bound's, and its pick's test F1 minus the
    bound's pick's (medians over the seeds); the same against the bound that knows only each
    configuration's expected curve."""
    lines = []
    for label, _, name, _ in goals.BANKS:
        summary = load(name)["summary"]
        for workers in ("8", "32"):
            said = []
            for bound in (goals.BOUND, goals.BOUND_EXPECTED):
                ratios, gaps = [], []
                for budget in sorted(summary[workers], key=int):
                    own = summary[workers][budget]["own objective"]
                    pick = summary[workers][budget]["test F1 of the pick"]
                    if bound not in own:
                        break
                    ratios.append(
                        f"{own['default']['median'] / own[bound]['median']:.2f}x ({budget})"
                    )
                    gaps.append(
                        f"{signed(pick['default']['median'] - pick[bound]['median'])} ({budget})"
                    )
                if ratios:
                    said.append((bound, ratios, gaps))
            first = said[0]
            text = (
                f"- On the {label}, {workers} workers: the default's budget fraction is "
                f"{', '.join(first[1])} the first-wave bound's; its pick's test F1 minus the "
                f"bound's pick's: {', '.join(first[2])}"
            )
            for _, ratios, gaps in said[1:]:
                text += (
                    f". Against the bound that knows each configuration's expected curve but "
                    f"not its run's luck: {', '.join(ratios)}; picks {', '.join(gaps)}"
                )
            lines.append(text + f" (`{name}.json`).\n")
    return "".join(lines)


BASELINE_RUNS = (("the bank the default was chosen on", "simulate_baselines"),
                 ("a second task, never used to choose", "simulate_task2"))  # fmt: skip


def baselines_tables() -> str:
    """Per bank, worker count and budget: each strategy's pick on test F1 and the default's
    paired difference with it, and how soon each reaches random-fifo's final best (one rule
    for all, in budget and in compute-seconds)."""
    lines = []
    runs = [*BASELINE_RUNS, *((label, f"{name}_workers8") for label, name in BASELINE_RUNS)]
    for label, name in runs:
        run = load(name)
        st, settings = run["strategies"], run["settings"]
        lines += [
            f"**{settings['bank']}** ({label}; {run['bank']['runs']} runs, "
            f"{settings['seeds']} paired seeds, {settings['workers']} workers):",
            "",
            "| budget | strategy | test F1 | default - it (paired) | to random-fifo's best: "
            "budget | compute-seconds |",
            "|---|---|---|---|---|---|",
        ]
        for b in budgets_of(run):
            unit = f"{b[:-1]} epochs' compute-s" if b.endswith("s") else f"{b} trial-epochs"
            for strategy, r in st.items():
                diff = st["default"][b]["paired_test_f1_diff_vs"].get(strategy)
                reach = r[b]["fraction_to_random_final_tuned_rule"]["median"]
                compute = r[b]["compute_to_random_final_tuned_rule"]["median"]
                lines.append(
                    f"| {unit} | {strategy} | {r[b]['test_f1']['median']:.3f} | "
                    f"{ci_text(diff) if diff else ''} | {_pct(reach) if reach else 'never'} | "
                    f"{_pct(compute) if compute else 'never'} |"
                )
        lines.append("")
    return "\n".join(lines)


def readme_baselines() -> str:
    out = []
    for label, name in BASELINE_RUNS:
        run = load(name)
        st = run["strategies"]["default"]
        budgets = budgets_of(run)
        others = [o for o in run["strategies"] if o not in ("default", "random-fifo")]
        said = []
        for other in others:
            diffs = [st[b]["paired_test_f1_diff_vs"][other] for b in budgets]
            verdicts = " / ".join(sorted({goals.verdict(d) for d in diffs}))
            medians = [d["median"] for d in diffs]
            said.append(f"{verdicts} {other} ({signed(min(medians))} to {signed(max(medians))})")
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


def readme_goals() -> str:
    rows = goals.rows()
    met = sum(g.met == "met" for g in rows)
    return (
        f"- The default's goals on both tasks, each per bank and worker count "
        f"(`benchmarks/README.md`: Goals): {met} of {len(rows)} met; not met: "
        f"{goals.unmet_summary() or 'none'}.\n"
    )


def goals_table() -> str:
    return goals.table()


VARIANTS = "simulate_variants_workers8"  # variants of the default at 8 workers, first task


def variants_workers8() -> str:
    """Each variant of the default at 8 workers on the first task: its budget fraction to
    random-fifo's final best over the first-wave bound's, and its pick against the default's."""
    run, bound = load(VARIANTS), load(goals.BANKS[0][2])["summary"]["8"]
    budgets = [b for b in budgets_of(run) if not b.endswith("s")]
    lines = []
    for name, by_budget in run["strategies"].items():
        ratios = []
        for b in budgets:
            reach = by_budget[b]["fraction_to_random_final"]["median"]
            limit = bound[b]["own objective"][goals.BOUND]["median"]
            ratios.append("never" if reach is None else f"{reach / limit:.2f}x")
        pick = ""
        if name != "default":
            diffs = [by_budget[b]["paired_test_f1_diff_vs"]["default"] for b in budgets]
            pick = f"; its pick minus the default's {', '.join(ci_text(d) for d in diffs)}"
        flags = run["settings"]["strategy_flags"].get(name)
        flags = f"`{flags}`" if flags else "no flags"
        lines.append(
            f"- `{name}` ({flags}): {', '.join(ratios)} the first-wave bound's budget "
            f"fraction at {', '.join(budgets)} trial-epochs{pick}.\n"
        )
    return "".join(lines)


RENDERERS = {
    "readme-real": readme_real,
    "noise-models": noise_models,
    "bounds-both-banks": bounds_both_banks,
    "readme-baselines": readme_baselines,
    "baselines-tables": baselines_tables,
    "goals": goals_table,
    "readme-goals": readme_goals,
    "variants-workers8": variants_workers8,
}
