"""How soon could any search reach random-fifo's final best with W workers? A bound for the
budget-fraction measure of simulate.py, next to the default's, on the same paired seeds.

The all-knowing search (hposim/all_knowing.py) proposes the bank's configurations best first,
ranked on their recorded curves, and keeps every worker busy as `genretune search` does. For
each seed it is replayed once per ranking and the ranking that reaches the target soonest is
kept: a search that knew, before it started, which configurations to run and how deep to
look. The second bound gives a search without prior knowledge the same hindsight from its
second wave on: its first wave (one trial per worker, proposed before any result exists) is
the default's own, every later trial is all-knowing, under the default's ASHA. The third does
the same ranked on the configurations' expected curves (the simulator's noise-shrunk means):
it knows how good each configuration is, but not the luck of the run it will replay. A real
search is not expected to beat them without leaving workers idle (`--ramp-up`): where a bound sits
above a third of the budget, so does any search of its kind at full concurrency.

    python benchmarks/all_knowing.py                         # 200 seeds; 2, 8, 32 workers
    python benchmarks/all_knowing.py --workers 32 --seeds 20
    python benchmarks/all_knowing.py --flags="--grace-period 1" \
        --json benchmarks/results/all_knowing_grace1.json

Writes --json (default benchmarks/results/all_knowing.json) and a .md and .png beside it.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import simulate
from provenance import provenance

from hposim.all_knowing import (
    FLAGS,
    RANKING_EPOCHS,
    FirstWaveThenKnowing,
    KnownOrderSearcher,
    rankings,
)
from hposim.bank import DEFAULT_PATH, load_bank
from hposim.curves import DEFAULT_NOISE_MODEL, NOISE_MODELS
from hposim.evaluation import baseline_and_oracle
from hposim.measures import first_reach
from hposim.stats import median_ci
from hposim.strategies import STRATEGIES

RESULTS = Path(__file__).resolve().parent / "results"
THIRD = 1 / 3
# (name in the output, key of a replay's best-so-far series): the goal's reading (each search's
# own objective) and every search at the rule tuned on validation.
MEASURES = (("own objective", "best"), ("tuned rule", "best_tuned"))


# The bounds replayed beside the default: name -> (whether its first wave is the default's,
# whether it ranks on the expected curves rather than the recorded runs).
FIRST_WAVE = "first wave, then all-knowing"
FIRST_WAVE_EXPECTED = "first wave, then knowing expected curves"
BOUNDS = {
    "all-knowing": (False, False),
    FIRST_WAVE: (True, False),
    FIRST_WAVE_EXPECTED: (True, True),
}
SEARCHES = ("default", *BOUNDS)
TEST = "test F1 of the pick"  # the key of the pick's test F1 in each seed's and summary's row
# Each ranking's pick on its own: a fixed ranking is a policy a search could follow, while the
# per-seed best of the rankings (TEST) is chosen on the outcome itself.
TEST_BY_RANKING = "test F1 of the pick, by ranking"


def bound_bests(
    seed: int, budget: int, workers: int, bound: tuple[bool, bool], flags: list[str]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Ranking name -> (best-so-far series of the tuned-rule validation F1, the default's
    objective; the test F1 of the pick after each result) of the all-knowing search's replay,
    or with `bound`'s first wave of the search whose first `workers` trials are those of the
    default search (with `flags`) and every later one all-knowing, under that search's ASHA;
    ranked on the recorded curves, or with `bound`'s second flag on the expected ones."""
    first_wave, expected = bound
    from genretune.search.algorithms import build_algorithms
    from hposim.replay import replay

    bank, source = simulate._STATE["bank"], simulate._STATE["source"]
    knobs = source.configs.knobs
    s = simulate.settings_for(flags if first_wave else FLAGS, seed, budget, workers, bank)
    out = {}
    ranked = rankings(source.configs, source.means.val if expected else None)
    for name, order in ranked.items():
        algorithms = build_algorithms(s, storage=None)
        known = KnownOrderSearcher([knobs[i] for i in order], s.metric, s.mode)
        if first_wave:
            known = FirstWaveThenKnowing(algorithms.searcher, known, workers, s.metric)
        algorithms.searcher = known
        log = replay(s, source, workers, np.random.default_rng(seed), algorithms=algorithms)
        best = np.maximum.accumulate(np.array(log.objective))
        out[name] = (best, simulate.chosen_test_f1(log, s))
    return out


def seed_task(task: tuple) -> dict:
    """One seed at one worker count: the budget fractions of the default and of each bound
    under each ranking and its best ranking, on both measures."""
    workers, seed, budgets, search_flags = task
    epochs = simulate._STATE["bank"].epochs
    flags = shlex.split(STRATEGIES["random-fifo"].replace("{epochs}", str(epochs)))
    fifo = simulate.simulate_task(("random-fifo", flags, seed, budgets, workers))["budgets"]
    default = simulate.simulate_task(("default", search_flags, seed, budgets, workers))
    default = default["budgets"]
    bounds = {
        n: bound_bests(seed, max(budgets), workers, f, search_flags) for n, f in BOUNDS.items()
    }
    out: dict = {"workers": workers, "seed": seed, "budgets": {}}
    for b in budgets:
        row = {}
        for measure, key in MEASURES:
            target = fifo[b][key][-1]
            cell = {"default": first_reach(default[b][key], target, b), "rankings": {}}
            for bound, by_ranking in bounds.items():
                reach = {n: first_reach(bt[0][:b], target, b) for n, bt in by_ranking.items()}
                cell[bound] = min(reach.values())
                cell["rankings"][bound] = reach
            row[measure] = cell
        # The test F1 of each search's pick at the end of the budget (a bound: its best
        # ranking's), for the goal of closing the baseline-to-oracle gap.
        row[TEST] = {"default": float(default[b]["chosen_test"][-1])} | {
            bound: max(float(bt[1][:b][-1]) for bt in by_ranking.values())
            for bound, by_ranking in bounds.items()
        }
        row[TEST_BY_RANKING] = {
            bound: {n: float(bt[1][:b][-1]) for n, bt in by_ranking.items()}
            for bound, by_ranking in bounds.items()
        }
        out["budgets"][b] = row
    return out


def summarise(outs: list[dict], workers: list[int], budgets: list[int]) -> dict:
    """workers -> budget -> measure (and TEST) -> search -> median, CI and share."""
    summary: dict = {}
    for w in workers:
        rows = sorted((o for o in outs if o["workers"] == w), key=lambda o: o["seed"])
        for b in budgets:
            for measure, _ in MEASURES:
                cells = [o["budgets"][b][measure] for o in rows]
                entry: dict = {"seeds": len(cells)}
                for search in SEARCHES:
                    values = np.array([c[search] for c in cells])
                    entry[search] = {
                        **median_ci(values),
                        "share_within_a_third": float(np.mean(values <= THIRD + 1e-9)),
                    }
                entry["rankings"] = {
                    bound: {
                        name: median_ci([c["rankings"][bound][name] for c in cells])["median"]
                        for name in cells[0]["rankings"][bound]
                    }
                    for bound in BOUNDS
                }
                summary.setdefault(str(w), {}).setdefault(str(b), {})[measure] = entry
            tests = [o["budgets"][b][TEST] for o in rows]
            summary[str(w)][str(b)][TEST] = {
                search: median_ci([t[search] for t in tests]) for search in SEARCHES
            }
            by_ranking = [o["budgets"][b][TEST_BY_RANKING] for o in rows]
            summary[str(w)][str(b)][TEST_BY_RANKING] = {
                bound: {
                    name: median_ci([r[bound][name] for r in by_ranking])
                    for name in by_ranking[0][bound]
                }
                for bound in BOUNDS
            }
    return summary


def _pct(v) -> str:
    return "never" if v is None else f"{v * 100:.0f}%"


def _cell(stat: dict) -> str:
    return (
        f"{_pct(stat['median'])} [{_pct(stat['ci_low'])}, {_pct(stat['ci_high'])}]; "
        f"{stat['share_within_a_third'] * 100:.0f}%"
    )


def _gap_cell(stat: dict, baseline: float, oracle: float) -> str:
    """'0.650 [0.640, 0.660]; 59%': median test F1 [95% CI]; the share of the gap from the
    baseline's test F1 to the oracle's that the median closes."""
    closed = (stat["median"] - baseline) / (oracle - baseline)
    return f"{stat['median']:.3f} [{stat['ci_low']:.3f}, {stat['ci_high']:.3f}]; {closed:.0%}"


def markdown(payload: dict) -> str:
    s = payload["settings"]
    lines = [
        f"# How soon any search could reach random-fifo's final best ({s['seeds']} paired seeds)",
        "",
        "Budget fraction (trial-epochs) at which a search first reaches random-fifo's final",
        "best validation value, same seed: median [95% bootstrap CI]; the share of seeds",
        "within a third of the budget. The all-knowing search proposes the bank's",
        "configurations best first, ranked on their recorded curves, with every worker busy;",
        "the second bound runs the default's first wave (one trial per worker), then proposes",
        "as the all-knowing search does, under the default's ASHA; the third does the same on",
        "the configurations' expected curves (the simulator's noise-shrunk means), without the",
        "luck of the runs it replays. Each seed keeps the ranking that gets there first",
        "(benchmarks/all_knowing.py).",
        "",
    ]
    if s.get("default_flags"):
        lines += [f"The default here (and its first wave): `{s['default_flags']}`.", ""]
    for measure, _ in MEASURES:
        lines += [
            f"## {measure}",
            "",
            "| workers | budget | " + " | ".join(SEARCHES) + " | single rankings (medians) |",
            "|---|---|" + "---|" * len(SEARCHES) + "---|",
        ]
        for w, by_budget in payload["summary"].items():
            for b, by_measure in by_budget.items():
                e = by_measure[measure]
                singles = "; ".join(
                    f"{bound}: "
                    + ", ".join(
                        f"{n.removeprefix('best of epochs ')} {_pct(v)}" for n, v in r.items()
                    )
                    for bound, r in e["rankings"].items()
                )
                cells = " | ".join(_cell(e[search]) for search in SEARCHES)
                lines.append(f"| {w} | {b} | {cells} | {singles} |")
        lines.append("")
    baseline, oracle = s["baseline_test_f1"], s["oracle_test_f1"]
    lines += [
        f"## {TEST}",
        "",
        "Held-out test F1 of the configuration each search picks at the end of the budget",
        "(retrained to the end): median [95% CI] over seeds; the share of the gap from the",
        f"baseline's test F1 ({baseline:.3f}) to the bank's oracle ({oracle:.3f}) it closes.",
        "A bound takes, per seed, its best ranking's pick (chosen on the outcome); the last",
        "column gives the first-wave bound's pick under each fixed ranking (medians).",
        "",
        "| workers | budget | " + " | ".join(SEARCHES) + " | first wave, single rankings |",
        "|---|---|" + "---|" * len(SEARCHES) + "---|",
    ]
    for w, by_budget in payload["summary"].items():
        for b, by_measure in by_budget.items():
            stats = by_measure[TEST]
            cells = " | ".join(_gap_cell(stats[x], baseline, oracle) for x in SEARCHES)
            singles = by_measure.get(TEST_BY_RANKING, {}).get(FIRST_WAVE, {})
            singles = ", ".join(
                f"{n.removeprefix('best of epochs ')} {v['median']:.3f}" for n, v in singles.items()
            )
            lines.append(f"| {w} | {b} | {cells} | {singles} |")
    lines.append("")
    return "\n".join(lines)


def plot(payload: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = payload["summary"]
    workers = list(summary)
    budgets = list(next(iter(summary.values())))
    fig, axes = plt.subplots(1, len(workers), figsize=(4 * len(workers), 3.5), sharey=True)
    axes = np.atleast_1d(axes)
    width = 0.8 / len(SEARCHES)
    for ax, w in zip(axes, workers, strict=True):
        x = np.arange(len(budgets))
        for i, search in enumerate(SEARCHES):
            stats = [summary[w][b]["own objective"][search] for b in budgets]
            # A median or bound never reached is drawn at 1.5 (above any fraction reached).
            value = lambda st, k: st[k] if st[k] is not None else 1.5  # noqa: E731
            med = np.array([value(st, "median") for st in stats])
            low = np.array([value(st, "ci_low") for st in stats])
            high = np.array([value(st, "ci_high") for st in stats])
            at = x + (i - (len(SEARCHES) - 1) / 2) * width
            ax.bar(at, med, width=width, label=search)
            ax.errorbar(at, med, yerr=[med - low, high - med], fmt="none", color="k")
        ax.axhline(THIRD, color="grey", linestyle="--", label="a third")
        ax.set_xticks(x, budgets)
        ax.set_xlabel("budget (trial-epochs)")
        ax.set_title(f"{w} workers")
    axes[0].set_ylabel("budget fraction to random-fifo's final best\n(own objective)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _without_budget(s) -> str:
    return json.dumps({**s.to_json(), "budget_epochs": None}, sort_keys=True, default=str)


def flags_problem(flags: list[str], budgets: list[int], workers: int, bank) -> str | None:
    """Why the default's `flags` do not fit the bound, or None: its replays run once at the
    largest budget and are cut for the others (so nothing may depend on the budget), its first
    wave is one trial per worker at time 0 (no --ramp-up), and both measures read its
    objective as the tuned-rule F1."""
    low, high = (
        simulate.settings_for(flags, 0, b, workers, bank) for b in (budgets[0], budgets[-1])
    )
    if _without_budget(low) != _without_budget(high):
        return "the search would depend on the budget (e.g. --tpe-startup auto)"
    if low.ramp_up or low.objectives or low.metric != "best_tuned_val_f1":
        return "the bound needs one objective, best_tuned_val_f1, and no --ramp-up"
    return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bank", type=Path, default=DEFAULT_PATH, help="the curve bank (.npz)")
    p.add_argument("--workers", default="2,8,32", help="concurrent trials (simulated), a list")
    p.add_argument("--budget-epochs", default="90,150,300", help="budgets in trial-epochs")
    p.add_argument("--seeds", type=int, default=200)
    p.add_argument(
        "--flags", default="", help='genretune search flags for the default and its first wave, '
        'given as --flags="--grace-period 1"',
    )  # fmt: skip
    p.add_argument(
        "--noise-model", choices=NOISE_MODELS, default=DEFAULT_NOISE_MODEL,
        help="the simulator's noise model (simulate.py --noise-model)",
    )  # fmt: skip
    p.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    p.add_argument("--json", type=Path, default=RESULTS / "all_knowing.json")
    args = p.parse_args(argv)
    try:
        workers = sorted({int(w) for w in args.workers.split(",")})
        budgets = sorted({int(b) for b in args.budget_epochs.split(",")})
    except ValueError:
        p.error("--workers and --budget-epochs take integers like 2,8,32 and 90,150,300")
    if min(workers) < 1 or min(budgets) < 1 or args.seeds < 1 or args.processes < 1:
        p.error("--workers, --budget-epochs, --seeds and --processes must be >= 1")
    if not args.bank.is_file():
        p.error(f"--bank {args.bank}: not found (record it with benchmarks/curve_bank.py)")
    began = time.monotonic()
    bank = load_bank(args.bank)
    initargs = (str(args.bank), None, True, args.noise_model)
    simulate._init(*initargs)
    baseline_test_f1, oracle_test_f1 = baseline_and_oracle(bank, simulate._STATE["source"])
    try:
        flags = shlex.split(args.flags)
    except ValueError as exc:
        p.error(f"--flags {args.flags!r}: {exc}")
    problem = simulate.strategy_problem(flags, budgets[0], max(workers), bank) or flags_problem(
        flags, budgets, max(workers), bank
    )
    if problem:
        p.error(f"--flags {args.flags!r}: {problem}")
    tasks = [(w, seed, budgets, flags) for w in workers for seed in range(args.seeds)]
    print(
        f"replaying the default, random-fifo and the all-knowing search: {len(tasks)} "
        f"(workers, seed) pairs, budgets {budgets}, on {args.bank.name} ({bank.n_runs} runs)",
        file=sys.stderr,
    )
    ctx = multiprocessing.get_context("spawn")
    outs = []
    with ctx.Pool(args.processes, initializer=simulate._init, initargs=initargs) as pool:
        for n, out in enumerate(pool.imap_unordered(seed_task, tasks, chunksize=2), 1):
            outs.append(out)
            if n % max(1, len(tasks) // 10) == 0 or n == len(tasks):
                print(f"  {n}/{len(tasks)} ({time.monotonic() - began:.0f}s)", file=sys.stderr)
    payload = {
        "provenance": provenance({"default": args.flags}),
        "settings": {
            "bank": args.bank.name,
            "seeds": args.seeds,
            "workers": workers,
            "budgets": budgets,
            "default_flags": args.flags,
            "noise_model": args.noise_model,
            "ranking_epochs": [str(k) for k in RANKING_EPOCHS],
            "baseline_test_f1": baseline_test_f1,
            "oracle_test_f1": oracle_test_f1,
        },
        "summary": summarise(outs, workers, budgets),
        "wall_seconds": round(time.monotonic() - began, 1),
    }
    text = markdown(payload)
    print(text)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(payload, indent=1) + "\n")
    args.json.with_suffix(".md").write_text(text)
    plot(payload, args.json.with_suffix(".png"))
    print(f"wrote {args.json} (.md, .png) in {payload['wall_seconds']:.0f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
