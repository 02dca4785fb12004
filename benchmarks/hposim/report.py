"""Tables (printed and Markdown) and the regret plot of a simulation."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hposim.stats import median_band


def _ci(stat: dict, digits: int = 3, percent: bool = False) -> str:
    def fmt(v):
        if v is None:
            return "never"
        return f"{v * 100:.0f}%" if percent else f"{v:.{digits}f}"

    return f"{fmt(stat['median'])} [{fmt(stat['ci_low'])}, {fmt(stat['ci_high'])}]"


def _signed(stat: dict) -> str:
    f = lambda v: "n/a" if v is None else f"{v:+.3f}"  # noqa: E731
    return f"{f(stat['median'])} [{f(stat['ci_low'])}, {f(stat['ci_high'])}]"


def _num(value, digits: int = 3) -> str:
    return "n/a" if value is None or value != value else f"{value:.{digits}f}"


def header_lines(p: dict) -> list[str]:
    o, s = p["oracle"], p["surrogate"]
    config = ", ".join(f"{k} {v:.3g}" for k, v in o["config"].items())
    return [
        f"oracle: test F1 {p['oracle_test_f1']:.3f} ({config}; {o['rule']}, best epoch "
        f"{o['best_epoch']})",
        f"baseline (hand-tuned configuration, threshold 0.5): test F1 "
        f"{p['baseline_test_f1']:.3f} (per training seed: "
        f"{', '.join(f'{v:.3f}' for v in p['baseline']['test_f1_per_seed'])})",
        f"noise between training seeds ({p['repeated_configs']} configurations x 3 seeds): sd "
        f"{_num(p['noise_sd'])} best-epoch val F1, {_num(p['noise_sd_test'])} test F1",
        f"surrogate ({s['model']}), {s['folds']}-fold: Spearman {s['spearman']:.3f}, MAE "
        f"{s['mae']:.4f} best-epoch val F1 at threshold 0.5 ({s['mae_all_rules']:.4f} over the "
        f"space's rules; noise floor {_num(s['noise_floor_mae'], 4)})",
    ]


def table_rows(p: dict, budget: str) -> list[list[str]]:
    rows = []
    for name, by_budget in p["strategies"].items():
        r = by_budget[budget]
        rows.append(
            [
                name,
                f"{r['trials']['median']:.0f}",
                _ci(r["fraction_to_random_final"], percent=True),
                f"{r['reached_random_final'] * 100:.0f}%",
                _ci(r["wall_to_random_final"], percent=True) if "wall_to_random_final" in r else "",
                _ci(r["fraction_to_random_final_tuned_rule"], percent=True)
                if "fraction_to_random_final_tuned_rule" in r
                else "",
                _ci(r["fraction_to_random_final_test"], percent=True),
                _ci(r["test_f1"]),
                _ci(r["regret"]),
                _signed(r["paired_test_f1_diff_vs_random_asha"]),
                _signed(r["paired_test_f1_at_third_vs_random_fifo_final"])
                if "paired_test_f1_at_third_vs_random_fifo_final" in r
                else "",
                _ci(r["compute_to_random_final_tuned_rule"], percent=True)
                if "compute_to_random_final_tuned_rule" in r
                else "",
            ]
        )
    return rows


def budget_title(p: dict, budget: str) -> str:
    """ "150 trial-epochs", or for "150s" the compute-seconds of 150 mean epochs."""
    if budget.endswith("s"):
        mean = p["settings"].get("mean_epoch_seconds", 0.0)
        n = int(budget[:-1])
        return f"{n * mean:.0f} compute-seconds ({n} mean epochs of {mean:.2f} s)"
    return f"{budget} trial-epochs"


def diff_lines(p: dict, budget: str, of: str = "default") -> list[str]:
    """`of` minus every other strategy, on test F1, paired by seed."""
    r = p["strategies"].get(of, {}).get(budget, {})
    return [
        f"{of} - {other}: {_signed(stat)}"
        for other, stat in r.get("paired_test_f1_diff_vs", {}).items()
    ]


COLUMNS = [
    "strategy",
    "trials",
    "budget fraction to random-fifo's final best (val)",
    "seeds that reach it",
    "wall time to it (share of random-fifo's)",
    "budget fraction to random-fifo's final best, both on the tuned-rule val F1",
    "budget fraction to random-fifo's final test F1",
    "test F1",
    "regret vs oracle",
    "test F1 - random-asha (paired)",
    "test F1 at a third of the budget - random-fifo's at its end (paired)",
    "compute-seconds to random-fifo's final best, tuned-rule val F1 (share of random-fifo's)",
]


def print_tables(p: dict) -> None:
    print("\n".join(header_lines(p)))
    for budget in map(str, p["settings"]["budgets"]):
        print(
            f"\nbudget {budget_title(p, budget)}; median [95% bootstrap CI] over "
            f"{p['settings']['seeds']} paired seeds, {p['settings']['workers']} workers"
        )
        rows = [COLUMNS, *table_rows(p, budget)]
        widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
        for r in rows:
            print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)))
        print("test F1, paired: " + "; ".join(diff_lines(p, budget)))
    if p.get("trial_check"):
        print(trial_check_line(p["trial_check"]))
    for v in p.get("validation", []):
        print(
            f"real {v['strategy']} seed {v['seed']} ({v['budget']} trial-epochs): "
            f"{v['inside'] * 100:.0f}% of its best-so-far curve inside the simulated 90% band"
        )


def trial_check_line(t: dict) -> str:
    if not t["trials"]:
        return "real trials: none with per-epoch values (search_efficiency.py's trial_log)"

    def ci(d: dict) -> str:
        if d["median"] is None:
            return "-"
        return f"{d['median']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]"

    line = (
        f"real trials' best objective minus the simulator's mean for the same configuration, "
        f"median [95% CI]: {ci(t['real_minus_simulated'])} over {t['trials']} trials (mean "
        f"{t['mean_real_minus_simulated']:+.3f}); where the simulator expects at least "
        f"{t['good_threshold']:g}: {ci(t['good_real_minus_simulated'])} over "
        f"{t['good_trials']} trials"
    )
    for key, early in t.get("early_rank", {}).items():
        if "epoch1" not in early:
            continue
        ranks = "; ".join(
            f"epoch {k}: real {early[f'epoch{k}']['real']:.2f} "
            f"[{early[f'epoch{k}']['real_ci'][0]:.2f}, {early[f'epoch{k}']['real_ci'][1]:.2f}], "
            f"simulated {early[f'epoch{k}']['simulated']:.2f}"
            for k in (1, 2, 3)
        )
        line += (
            f". How well an early epoch's {key} ranks the trials that ran {early['epochs']} "
            f"epochs by their best over them (Spearman; {early['trials']} real trials, 95% CI; "
            f"{early['simulated_trials']} in replays of the same strategies and budgets): "
            f"{ranks}"
        )
    return line


def markdown(p: dict) -> str:
    s = p["settings"]
    lines = [f"# Simulated searches ({s['seeds']} paired seeds, {s['workers']} workers)", ""]
    lines += [f"- {line}" for line in header_lines(p)]
    lines += ["", "Strategies (genretune search flags on the demo profile):", ""]
    lines += [f"- `{n}`: `{f or '(none)'}`" for n, f in s["strategy_flags"].items()]
    for budget in map(str, s["budgets"]):
        lines += ["", f"## {budget_title(p, budget)}", "", "median [95% bootstrap CI]", ""]
        lines.append("| " + " | ".join(COLUMNS) + " |")
        lines.append("|" + "---|" * len(COLUMNS))
        lines += ["| " + " | ".join(r) + " |" for r in table_rows(p, budget)]
        lines += ["", "Test F1, paired by seed: " + "; ".join(diff_lines(p, budget))]
    if p.get("trial_check"):
        check = trial_check_line(p["trial_check"])
        lines += ["", "## Real trials against the simulator", "", check]
    if p.get("validation"):
        lines += ["", "## Real searches against the simulated 90% band", ""]
        lines += [
            "| file | strategy | seed | inside | outside at trial-epochs |",
            "|---|---|---|---|---|",
        ]
        for v in p["validation"]:
            outside = v["below_at"] + v["above_at"]
            where = _ranges(sorted(outside)) or "-"
            lines.append(
                f"| {v['file']} | {v['strategy']} | {v['seed']} | {v['inside'] * 100:.0f}% | "
                f"{where} |"
            )
    lines.append("")
    return "\n".join(lines)


def _ranges(values: list[int]) -> str:
    out, start = [], None
    for i, v in enumerate(values):
        if start is None:
            start = v
        if i + 1 == len(values) or values[i + 1] != v + 1:
            out.append(f"{start}" if start == v else f"{start}-{v}")
            start = None
    return ", ".join(out)


def plot_regret(results: dict, budgets: list[int], oracle: float, path: Path) -> Path:
    """Median best-so-far regret (oracle test F1 - test F1 of the configuration the search
    would pick so far) vs trial-epochs, with the 95% CI of the median, one panel per budget."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    budgets = [b for b in budgets if isinstance(b, int)]  # per trial-epoch: epoch budgets
    fig, axes = plt.subplots(1, len(budgets), figsize=(5 * len(budgets), 4), dpi=110)
    axes = np.atleast_1d(axes)
    for ax, budget in zip(axes, budgets, strict=True):
        for name, by_seed in results.items():
            # A search that ended before its budget (a baseline's plan, or no more trials)
            # keeps its last pick to the end.
            picks = [by_seed[s][budget]["chosen_test"] for s in sorted(by_seed)]
            picks = [np.pad(c, (0, budget - len(c)), mode="edge") for c in picks if len(c)]
            if not picks:
                continue
            curves = oracle - np.stack([c[:budget] for c in picks])
            med, low, high = median_band(curves)
            x = np.arange(1, budget + 1)
            ax.plot(x, med, label=name)
            ax.fill_between(x, low, high, alpha=0.2)
        ax.set_title(f"budget {budget} trial-epochs")
        ax.set_xlabel("trial-epochs")
        ax.set_ylabel("regret: oracle test F1 - chosen config's")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)
