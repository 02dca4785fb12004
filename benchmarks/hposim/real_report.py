"""The real-search benchmark's summary and report (benchmarks/search_efficiency.py): its
measures over the recorded runs, its tables, its plot and its result files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from provenance import provenance

from hposim.measures import final_best, first_reach
from hposim.stats import median_ci

FRACTIONS = (0.25, 0.5, 1.0)  # of the budget: where each search's pick is tested
DEFAULT_BUDGET_EPOCHS = 150
BASELINE = "baseline"  # the hand-tuned configuration, trained alone


def tuned_rule_fraction(run: dict, method: str, budget: int) -> float | None:
    """The budget fraction at which `method` first reaches the best tuned-rule validation F1
    of random-fifo's trials (same seed): both searches' models measured alike (the rule does
    not change training). None where that is not recorded: random-fifo's values (per result
    since the 10-seed run, per trial since seed 3 of the first) or, for a method that
    optimised another objective, the order of its tuned-rule values."""
    fifo = run["methods"]["random-fifo"]
    values = fifo.get("curve_tuned_rule") or [
        v for t in fifo.get("trial_log") or [] for v in t.get("tuned_val_f1") or []
    ]
    ran = run["methods"][method]
    if "curve_tuned_rule" in ran:
        curve = list(enumerate(ran["curve_tuned_rule"], start=1))
    elif ran.get("objective") == "tuned_val_f1":
        curve = ran["curve"]
    else:
        return None
    if not values:
        return None
    # Per result, random-fifo's values count within the budget only, as its own final best.
    target = final_best(values, budget) if fifo.get("curve_tuned_rule") else np.nanmax(values)
    return first_reach([v for _, v in curve], float(target), budget)


def summarise(runs: list[dict], methods: list[str], budget: int) -> dict:
    """Each method over the seeds it ran; its difference with random-asha paired by seed."""
    table = {}
    for method in methods:
        ran = [r for r in runs if method in r["methods"]]
        rows = [r["methods"][method] for r in ran]
        table[method] = {
            "seeds": [int(r["seed"]) for r in ran],
            "trials": [r["trials"] for r in rows],
            "fraction_to_random_final": [r["fraction_to_random_final"] for r in rows],
            "fraction_to_random_final_tuned_rule": [
                tuned_rule_fraction(r, method, budget) for r in ran
            ],
            **{
                f: {
                    "best": [r["points"][f]["best"] for r in rows],
                    "test_f1": [r["points"][f]["test_f1"] for r in rows],
                }
                for f in map(str, FRACTIONS)
            },
        }
        asha = [r["methods"]["random-asha"]["points"]["1.0"]["test_f1"] for r in ran]
        diffs = np.array(table[method]["1.0"]["test_f1"]) - np.array(asha)
        table[method]["paired_test_f1_diff_vs_random_asha"] = diffs.tolist()
        # The one-third goal on test F1: the pick part-way against random-fifo's at its end.
        fifo_end = np.array([r["methods"]["random-fifo"]["points"]["1.0"]["test_f1"] for r in ran])
        table[method]["paired_test_f1_vs_random_fifo_final"] = {
            f: (np.array(table[method][f]["test_f1"]) - fifo_end).tolist() for f in ("0.25", "0.5")
        }
    table[BASELINE] = {"test_f1": [r["methods"][BASELINE]["test_f1"] for r in runs]}
    checks = [r["checkpoint_vs_retrain"] for r in runs if "checkpoint_vs_retrain" in r]
    return {
        "table": table,
        "budget_epochs": budget,
        "seeds": len(runs),
        "checkpoint_vs_retrain_max_abs_diff": max(checks, default=None),
        "checkpoint_vs_retrain_checks": len(checks),
    }


def _vals(values: list[float]) -> str:
    """Median [bootstrap 95% CI of the median] (every seed's value)."""
    shown = ", ".join("never" if v == float("inf") else f"{v:.3f}" for v in values)
    ci = median_ci(values)
    as_text = lambda v: "never" if v is None else f"{v:.3f}"  # noqa: E731
    return f"{as_text(ci['median'])} [{as_text(ci['ci_low'])}, {as_text(ci['ci_high'])}] ({shown})"


def _known(t: dict, measure: str) -> str:
    """A budget fraction over the seeds where it is recorded, with their count."""
    values = [v for v in t.get(f"fraction_to_random_final_{measure}", []) if v is not None]
    return f"{_vals(values)} ({len(values)})" if values else "-"


def _part_way(t: dict) -> str:
    """Median [CI] of the paired differences at 25% and 50% of the budget."""
    parts = []
    for values in t.get("paired_test_f1_vs_random_fifo_final", {}).values():
        ci = median_ci(values)
        if ci["median"] is None:
            parts.append("-")
        elif ci["ci_low"] is None or ci["ci_high"] is None:  # a bound never reached
            parts.append(f"{ci['median']:+.3f}")
        else:
            parts.append(f"{ci['median']:+.3f} [{ci['ci_low']:+.3f}, {ci['ci_high']:+.3f}]")
    return " / ".join(parts) or "-"


def print_tables(summary: dict) -> str:
    lines = [
        f"budget: {summary['budget_epochs']} trial-epochs per search, {summary['seeds']} seeds; "
        "median [bootstrap 95% CI of the median] (each seed's value, seeds in order)",
        "",
        "| method | seeds | trials | best val objective at 100% | test F1 at 25% / 50% / 100% "
        "| budget fraction to random-fifo's final best "
        "| the same, both on the tuned-rule val F1 (seeds) | test F1 - random-asha (paired) "
        "| test F1 at 25% / 50% - random-fifo's at 100% (paired) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for method, t in summary["table"].items():
        if method == BASELINE:
            lines.append(
                f"| {method} (trained alone) | {len(t['test_f1'])} | 1 | - "
                f"| {_vals(t['test_f1'])} | - | - | - | - |"
            )
            continue
        test = " / ".join(f"{np.median(t[f]['test_f1']):.3f}" for f in map(str, FRACTIONS))
        lines.append(
            f"| {method} | {len(t['seeds'])} | {np.median(t['trials']):.0f} "
            f"| {_vals(t['1.0']['best'])} | {test} "
            f"({', '.join(f'{v:.3f}' for v in t['1.0']['test_f1'])}) "
            f"| {_vals(t['fraction_to_random_final'])} | {_known(t, 'tuned_rule')} "
            f"| {_vals(t['paired_test_f1_diff_vs_random_asha'])} | {_part_way(t)} |"
        )
    diff = summary.get("checkpoint_vs_retrain_max_abs_diff")
    lines += [
        "",
        "A method with --decision tuned optimises the tuned-rule validation F1: its validation "
        "column is not comparable with the others; its test F1 uses the rule fitted on "
        "validation.",
        f"Checkpoint vs retrain of the baseline: max |test F1 diff| {diff} over "
        f"{summary['checkpoint_vs_retrain_checks']} seed(s).",
    ]
    if summary.get("relabelled"):
        lines.append(f"Methods renamed after the run: {summary['relabelled']}.")
    return "\n".join(lines)


def plot(runs: list[dict], summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    budget = summary["budget_epochs"]
    methods = [m for m in summary["table"] if m != BASELINE]
    for k, method in enumerate(methods):
        for i, run in enumerate(r for r in runs if method in r["methods"]):
            curve = run["methods"][method]["curve"][:budget]
            ys = np.maximum.accumulate([v for _, v in curve])
            left.plot([e for e, _ in curve], ys, color=f"C{k}", alpha=0.8,
                      label=method if i == 0 else None)  # fmt: skip
    left.set_xlabel("cumulative trial-epochs")
    left.set_ylabel("best-so-far validation objective")
    left.legend(fontsize=8)
    names = [*methods, BASELINE]
    values = [summary["table"][m]["1.0"]["test_f1"] if m != BASELINE
              else summary["table"][m]["test_f1"] for m in names]  # fmt: skip
    for k, v in enumerate(values):
        right.scatter([k] * len(v), v, color=f"C{k}")
        right.hlines(np.median(v), k - 0.3, k + 0.3, color=f"C{k}")
    right.set_xticks(range(len(names)), names, rotation=20, fontsize=8)
    right.set_ylabel("held-out test F1 of the chosen configuration")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def write_outputs(summary: dict, runs: list[dict], out: Path, extends: dict | None = None) -> None:
    """The JSON (with its provenance; `extends`: that of the earlier run --add-to added to),
    the tables and the plot."""
    text = print_tables(summary)
    print("\n" + text)
    budget = summary["budget_epochs"]
    stem = "search_efficiency" + ("" if budget == DEFAULT_BUDGET_EPOCHS else f"_budget{budget}")
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(
        json.dumps(
            {
                "provenance": provenance(summary["strategy_flags"], extends=extends),
                "summary": summary,
                "runs": runs,
            },
            indent=1,
            default=float,
        )
    )
    (out / f"{stem}.md").write_text(text + "\n")
    plot(runs, summary, out / f"{stem}.png")
    print(f"wrote {out / stem}.json, .md and .png ({summary['wall_s']:.0f}s)")


def earlier_runs(
    path: Path, args, methods: dict[str, list[str]], error
) -> tuple[dict, dict, dict | None]:
    """({seed: run}, summary, provenance) of an earlier run to extend with more seeds or more
    methods; `error` ends the program (exit 2) before anything runs."""
    try:
        saved = json.loads(path.read_text())
        summary, runs = saved["summary"], saved["runs"]
        by_seed = {int(run["seed"]): run for run in runs}
        flags_before = dict(summary["strategy_flags"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        error(f"--add-to {path}: not a search_efficiency.py result ({exc})")
    flags = {m: " ".join(f) for m, f in methods.items()}
    if summary.get("budget_epochs") != args.budget_epochs:
        error(f"--add-to {path}: ran with --budget-epochs {summary.get('budget_epochs')}")
    changed = sorted(m for m in flags_before if flags.get(m, flags_before[m]) != flags_before[m])
    missing = sorted(set(flags_before) - set(flags))
    if changed:
        error(f"--add-to {path}: method(s) {changed} ran there with other flags")
    if missing:
        given = " ".join(f'--strategy "{m}={flags_before[m]}"' for m in missing)
        error(f"--add-to {path}: method(s) {missing} ran there; give them again: {given}")
    return by_seed, summary, saved.get("provenance")
