"""The default search's goals on both banks, each checked against the result files: what
benchmarks/README.md's "Goals" table says (rendered by headlines.py; `python goals.py` prints
it).

The goals: on test F1 the default's pick beats random-asha's (paired CI above 0) and is not
worse than one-epoch-top-k's, hyperband's or bohb's (median difference at least -0.003 and the
CI's upper end above 0), at 2 and 8 workers and every budget; with 2 workers it reaches
random-fifo's final best within a third of the budget at 150 and 300 trial-epochs; at 8 and 32
workers its budget fraction is within 1.25x of the first-wave bound's and its pick within 0.01
test F1 of the bound's pick; real searches on the second task (at least 10 paired seeds) give
a margin over random-asha whose CI excludes 0 and holds the simulator's predicted margin. The
first task's real searches are checked alike; the pooled noise model's prediction (archived) is
shown beside the current one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

RESULTS = Path(__file__).resolve().parent / "results"
# (label, simulated baselines, bounds, real searches) per bank
BANKS = (
    ("first task", "simulate_baselines", "all_knowing", "search_efficiency"),
    ("second task", "simulate_task2", "all_knowing_task2", "task2/search_efficiency"),
)
# The same comparison simulated with the pooled noise model, which the simulator used before
# its noise by quality and training seed became the default (archived), per baselines file.
POOLED = {
    "simulate_baselines": "archive/simulate_baselines_pooled",
    "simulate_task2": "archive/simulate_task2_pooled",
}
FIELD = ("one-epoch-top-k", "hyperband", "bohb")
NOT_WORSE = -0.003  # "not worse": median difference at least this, the CI's upper end above 0
THIRD, REACH_BUDGETS = 1 / 3, ("150", "300")
BOUND, BOUND_RATIO, BOUND_PICK = "first wave, then all-knowing", 1.25, 0.01
# The same bound ranked on each configuration's expected curve: it knows how good each one is,
# but not the luck of the run it replays (all_knowing.py).
BOUND_EXPECTED = "first wave, then knowing expected curves"
# The bound's pick under each fixed ranking (all_knowing.py); the bound itself takes, per seed,
# the best of its rankings, chosen on the outcome.
TEST_BY_RANKING = "test F1 of the pick, by ranking"
REAL_SEEDS = 10


class Goal(NamedTuple):
    goal: str
    bank: str  # "first task" (the bank the default was chosen on) or "second task"
    setting: str  # workers and budgets, or real searches
    measured: str
    met: str  # "met", or "**not met**" with how many of its cases hold


def load(name: str) -> dict:
    """A result file by its name under results/, without .json."""
    return json.loads((RESULTS / f"{name}.json").read_text())


def signed(x: float) -> str:
    return f"{x:+.3f}"


def ci_text(v: dict) -> str:
    """'+0.019 [+0.004, +0.034]': a median and its CI."""
    return f"{signed(v['median'])} [{signed(v['ci_low'])}, {signed(v['ci_high'])}]"


def _pct(x: float | None) -> str:
    return "never" if x is None else f"{100 * x:.0f}%"


def _met(held: list[bool]) -> str:
    """ "met" when every case holds, else how many of them do."""
    if all(held):
        return "met"
    return "**not met**" if len(held) == 1 else f"**not met** ({sum(held)} of {len(held)})"


def verdict(diff: dict) -> str:
    """The default against another strategy on test F1 (paired by seed): "beats" when the
    CI is above 0; "not worse than" when the median difference is at least NOT_WORSE and the
    CI's upper end above 0; else "worse than"."""
    if diff["ci_low"] > 0:
        return "beats"
    return "not worse than" if diff["median"] >= NOT_WORSE and diff["ci_high"] > 0 else "worse than"


def budgets_of(run: dict) -> list[str]:
    return [str(b) for b in run["settings"]["budgets"]]


def test_f1_rows(bank: str, name: str) -> list[Goal]:
    rows = []
    for workers, suffix in (("2", ""), ("8", "_workers8")):
        run = load(name + suffix)
        default = run["strategies"]["default"]
        budgets = budgets_of(run)
        for other in ("random-asha", *FIELD):
            diffs = [default[b]["paired_test_f1_diff_vs"][other] for b in budgets]
            if other == "random-asha":
                goal, held = "beats random-asha", [d["ci_low"] > 0 for d in diffs]
            else:
                goal = f"not worse than {other}"
                held = [verdict(d) != "worse than" for d in diffs]
            medians = [d["median"] for d in diffs]
            worst = min(diffs, key=lambda d: d["ci_low"])
            rows.append(Goal(
                f"test F1: {goal}", bank, f"{workers} workers, {', '.join(budgets)}",
                f"paired medians {signed(min(medians))} to {signed(max(medians))}; lowest CI "
                f"{signed(worst['ci_low'])}", _met(held),
            ))  # fmt: skip
    return rows


def reach_rows(bank: str, name: str) -> list[Goal]:
    default = load(name)["strategies"]["default"]
    alike = [default[b]["fraction_to_random_final_tuned_rule"]["median"] for b in REACH_BUDGETS]
    on_test = [default[b]["fraction_to_random_final_test"]["median"] for b in REACH_BUDGETS]
    where = f"2 workers, {', '.join(REACH_BUDGETS)}"
    return [
        Goal("within 1/3 of the budget to random-fifo's final best validation F1 (one rule for "
             "all)", bank, where, ", ".join(map(_pct, alike)),
         _met([f is not None and f <= THIRD for f in alike])),
        Goal("within 1/3 of the budget to the test F1 of random-fifo's final pick", bank, where,
         ", ".join(map(_pct, on_test)),
         _met([f is not None and f <= THIRD for f in on_test])),
    ]  # fmt: skip


def bound_rows(bank: str, name: str) -> list[Goal]:
    summary = load(name)["summary"]
    rows = []
    for workers in ("8", "32"):
        budgets = sorted(summary[workers], key=int)
        ratios, fixed_ratios, gaps, fixed_gaps = [], [], [], []
        expected_ratios, expected_gaps = [], []
        for b in budgets:
            own = summary[workers][b]["own objective"]
            pick = summary[workers][b]["test F1 of the pick"]
            ratios.append(own["default"]["median"] / own[BOUND]["median"])
            gaps.append(pick["default"]["median"] - pick[BOUND]["median"])
            if BOUND_EXPECTED in own:
                expected_ratios.append(own["default"]["median"] / own[BOUND_EXPECTED]["median"])
                expected_gaps.append(pick["default"]["median"] - pick[BOUND_EXPECTED]["median"])
            # The best fixed ranking (one policy for every seed), beside the per-seed best.
            fixed_ratios.append(own["default"]["median"] / min(own["rankings"][BOUND].values()))
            by_ranking = summary[workers][b].get(TEST_BY_RANKING, {}).get(BOUND)
            if by_ranking:
                best = max(v["median"] for v in by_ranking.values())
                fixed_gaps.append(pick["default"]["median"] - best)
        where = f"{workers} workers, {', '.join(budgets)}"
        fixed_ratio_text = ", ".join(f"{r:.2f}x" for r in fixed_ratios)
        fixed_gap_text = (
            f"; best fixed ranking: {', '.join(map(signed, fixed_gaps))}" if fixed_gaps else ""
        )
        ratio_text = (
            f"{', '.join(f'{r:.2f}x' for r in ratios)}; best fixed ranking: {fixed_ratio_text}"
        )
        gap_text = ", ".join(map(signed, gaps)) + fixed_gap_text
        if expected_ratios:
            ratio_text += "; knowing expected curves: " + ", ".join(
                f"{r:.2f}x" for r in expected_ratios
            )
            gap_text += "; knowing expected curves: " + ", ".join(map(signed, expected_gaps))
        rows += [
            Goal(f"budget fraction within {BOUND_RATIO}x of the first-wave bound's", bank, where,
             ratio_text, _met([r <= BOUND_RATIO for r in ratios])),
            Goal(f"pick within {BOUND_PICK} test F1 of the bound's pick", bank, where,
             gap_text, _met([g >= -BOUND_PICK for g in gaps])),
        ]  # fmt: skip
    return rows


def real_rows(bank: str, real: str, simulated: str) -> list[Goal]:
    from hposim.stats import median_ci

    s = load(real)["summary"]
    diffs = [
        d for d in s["table"]["default"]["paired_test_f1_diff_vs_random_asha"] if d is not None
    ]
    gain = median_ci(diffs)
    budget = str(s["budget_epochs"])
    where = f"real searches, {budget} trial-epochs"

    def predicted(name: str) -> float:
        default = load(name)["strategies"]["default"][budget]
        return default["paired_test_f1_diff_vs"]["random-asha"]["median"]

    def inside(margin: float) -> bool:
        return gain["ci_low"] <= margin <= gain["ci_high"]

    margin = predicted(simulated)
    pooled = predicted(POOLED[simulated])
    return [
        Goal(f"at least {REAL_SEEDS} paired seeds", bank, where, f"{len(diffs)}",
         _met([len(diffs) >= REAL_SEEDS])),
        Goal("margin over random-asha: CI excludes 0", bank, where,
         f"{signed(gain['median'])} [{signed(gain['ci_low'])}, {signed(gain['ci_high'])}]",
         _met([gain["ci_low"] > 0])),
        Goal("the simulator's predicted margin inside the real CI", bank, where,
         f"{signed(margin)} (the pooled noise model of earlier result sets: {signed(pooled)}, "
         f"{'inside' if inside(pooled) else 'outside'})", _met([inside(margin)])),
    ]  # fmt: skip


def rows() -> list[Goal]:
    out = []
    for bank, simulated, bound, real in BANKS:
        out += test_f1_rows(bank, simulated)
        out += reach_rows(bank, simulated)
        out += bound_rows(bank, bound)
        out += real_rows(bank, real, simulated)
    return out


def table() -> str:
    lines = ["| goal | bank | workers, budgets | measured (medians) | |", "|---|---|---|---|---|"]
    lines += [f"| {' | '.join(r)} |" for r in rows()]
    return "\n".join(lines) + "\n"


def unmet_summary() -> str:
    """The goals not met, each with where: "goal (bank, setting; ...)"."""
    where: dict[str, list[str]] = {}
    for g in rows():
        if g.met != "met":
            where.setdefault(g.goal, []).append(f"{g.bank}, {g.setting.split(',')[0]}")
    return "; ".join(f"{goal} ({'; '.join(places)})" for goal, places in where.items())


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    print(table(), end="")
