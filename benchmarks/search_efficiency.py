"""Search efficiency at an equal compute budget, counted in trial-epochs (issue: performance).

On the demo profile (synthetic data), for each seed:

  (a) the seed's hand-tuned config trained alone, with patience (one run; no search)
  (b) random search, no early stopping (every trial runs every epoch)
  (c) random search with ASHA and the patience stopper
      ((b) and (c) sample every trial: no seed point, `--no-seed-point`)
  (d) Optuna TPE with ASHA and the patience stopper (genretune's default: the seed's
      hand-tuned point is its first trial)
  (e) (d) with --decision tuned (threshold/top-K from each epoch's validation sweep)

Each search stops once its trials have run the budget's trial-epochs. For 25/50/100% of the
budget it reports the best validation objective reached so far and the held-out test F1 of that
best configuration trained to its end with `genretune train`'s code (patience, full epochs),
and the budget fraction at which (d) first reaches (b)'s final best. A configuration whose
trial was cut (ASHA, the budget) is retrained from scratch; one whose trial ended on its own is
scored from that trial's best checkpoint, which is what a retrain reproduces (the shared
training loop is deterministic): each seed checks this on the seed point, retrained as (a).

    python benchmarks/search_efficiency.py    # 3 seeds, 90 trial-epochs each (30-50 min, 2 cores)
    python benchmarks/search_efficiency.py --seeds 1 --budget-epochs 20   # a quick smoke run
    python benchmarks/search_efficiency.py --tpe-startup 4   # TPE's random start-up trials
    python benchmarks/search_efficiency.py --budget-epochs 150   # a larger budget

Writes benchmarks/results/search_efficiency[_budgetN][_tpeN].json, .md and .png and prints the
tables.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

FRACTIONS = (0.25, 0.5, 1.0)
DEFAULT_BUDGET_EPOCHS = 90
METHODS = {
    # (b) and (c) are plain random searches: no seed point as their first trial.
    "b_random_no_stop": [
        "--sampler",
        "random",
        "--no-seed-point",
        "--scheduler",
        "fifo",
        "--patience",
        "{epochs}",
    ],
    "c_random_asha": ["--sampler", "random", "--no-seed-point"],
    "d_tpe_asha": [],
    "e_tpe_asha_tuned": ["--decision", "tuned"],
}
LABELS = {
    "a_seed_config": "(a) seed's hand-tuned config",
    "b_random_no_stop": "(b) random, no early stopping",
    "c_random_asha": "(c) random + ASHA",
    "d_tpe_asha": "(d) TPE + ASHA (default)",
    "e_tpe_asha_tuned": "(e) TPE + ASHA, --decision tuned",
}


def _search_argv(storage: Path, name: str, seed: int, budget: int, epochs: int, extra: list[str]):
    extra = [a.replace("{epochs}", str(epochs)) for a in extra]
    return [
        "search",
        "--name",
        name,
        "--storage-path",
        str(storage),
        "--seed",
        str(seed),
        "--data-seed",
        "0",
        "--num-samples",
        "1000",  # the budget ends the search, not the sample count
        "--budget-epochs",
        str(budget),
        "--max-concurrent",
        "2",
        "--progress-interval",
        "1000000",
        *extra,
    ]


def settings_for_method(storage: Path, seed: int, budget: int, extra: list[str], name="check"):
    from genretune.search.cli.search import settings_from_argv
    from genretune.search.profiles import get_profile

    epochs = get_profile("demo").epochs
    return settings_from_argv(_search_argv(storage, name, seed, budget, epochs, extra)[1:])


def run_method(storage: Path, method: str, seed: int, budget: int, epochs: int, extra: list[str]):
    """The experiment's rows in completion order: (cumulative trial-epochs, objective, config)."""
    from genretune.results.experiment import load_experiment
    from genretune.search.cli.search import settings_from_argv
    from genretune.search.launch import run_search
    from genretune.search.monitoring import END_REASONS_FILE

    name = f"{method}_seed{seed}"
    settings = settings_from_argv(_search_argv(storage, name, seed, budget, epochs, extra)[1:])
    began = time.monotonic()
    run_search(settings)
    wall = time.monotonic() - began
    exp = load_experiment(name, storage)
    metric = settings.metric
    history = exp.history.sort_values(["timestamp", "time_total_s"]).reset_index(drop=True)
    # The exact config each trial trained with (fixed values and sampled ones).
    configs = {
        tid: json.loads((exp.path / f"trial_{tid}" / "params.json").read_text())
        for tid in exp.trials["trial_id"]
    }
    reasons = json.loads((exp.path / END_REASONS_FILE).read_text())
    ended = {tid: reasons.get(tid, {}).get("end_reason") for tid in configs}
    step_metric = metric.removeprefix("best_")
    rows = [
        (i + 1, float(r[step_metric]), r["trial_id"])
        for i, r in enumerate(history.to_dict("records"))
    ]
    return {
        "rows": rows,
        "configs": configs,
        "ended": ended,
        "path": exp.path,
        "metric": metric,
        "wall_s": wall,
        "settings": settings,
    }


def retrain(flat: dict, tuned_rule: bool, threads: int) -> dict:
    """Train a configuration from scratch as `genretune train` does; its held-out test F1."""
    from genretune.model.config import config_from_flat
    from genretune.model.device import resolve_runtime
    from genretune.model.standalone import prepare_run, train_run

    cfg = config_from_flat(flat)
    with tempfile.TemporaryDirectory() as out:
        runtime = resolve_runtime("cpu", threads)
        outcome = train_run(prepare_run(cfg), cfg, runtime, Path(out), "b")
    m = outcome.metrics
    test = m["test_tuned_rule"] if tuned_rule else m["test"]
    return {
        "test_f1": test["test_f1"],
        "epochs_run": m["epochs_run"],
        "best_epoch": m["best_epoch"],
        "from": "retrain",
    }


def checkpoint_test(trial_dir: Path, flat: dict, tuned_rule: bool) -> dict:
    """The held-out test F1 of a trial that ended on its own (patience or its last epoch),
    from its best-epoch checkpoint. Retraining its config reproduces that trial epoch by epoch
    (the trainable and `genretune train` share one deterministic loop), so this equals the
    retrained test F1 without training again; run_seed checks it against a retrain each seed."""
    import contextlib
    import io

    import torch

    from genretune.data import load_dataset
    from genretune.model.config import config_from_flat
    from genretune.model.device import resolve_runtime
    from genretune.model.prepare import prepare_data
    from genretune.model.standalone import evaluation_report
    from genretune.model.training import FitResult, build_model, decision_rule
    from genretune.results.checkpoints import latest_state

    torch.set_num_threads(1)
    cfg = config_from_flat(flat)
    runtime = resolve_runtime("cpu", 1)
    with contextlib.redirect_stderr(io.StringIO()):
        prepared = prepare_data(load_dataset(cfg.data), cfg.filter, cfg.loss)
    state = latest_state(trial_dir)
    model = build_model(cfg, prepared.genre_filter.n_kept)
    model.load_state_dict(state["best_model"])
    model = model.to(memory_format=torch.channels_last)
    fitted = FitResult(model, state["history"], state["best_epoch"], state["best_score"], "")
    report, _, _ = evaluation_report(prepared, fitted, decision_rule(cfg), runtime)
    test = report["test_tuned_rule"] if tuned_rule else report["test"]
    return {
        "test_f1": test["test_f1"],
        "epochs_run": len(state["history"]),
        "best_epoch": state["best_epoch"],
        "from": "checkpoint",
    }


def curve_points(rows: list, budget: int) -> dict:
    """Best-so-far objective and its trial at each budget fraction."""
    points = {}
    for fraction in FRACTIONS:
        k = max(1, round(fraction * budget))
        seen = rows[:k]
        best = max(seen, key=lambda r: r[1])
        points[str(fraction)] = {"epochs": len(seen), "best": best[1], "trial_id": best[2]}
    return points


def first_reach(rows: list, target: float, budget: int) -> float | None:
    best = -np.inf
    for epochs, value, _ in rows[:budget]:
        best = max(best, value)
        if best >= target:
            return epochs / budget
    return None


def test_all(jobs: dict[str, tuple]) -> dict[str, dict]:
    """Every distinct configuration's test F1, two at a time (Ray tasks, one CPU each): from
    the trial's checkpoint when a trial dir is given, else retrained from scratch."""
    import ray

    from_checkpoint = ray.remote(num_cpus=1)(checkpoint_test)
    from_scratch = ray.remote(num_cpus=1)(retrain)
    refs = {
        key: from_scratch.remote(flat, tuned, 1)
        if trial_dir is None
        else from_checkpoint.remote(trial_dir, flat, tuned)
        for key, (flat, tuned, trial_dir) in jobs.items()
    }
    return dict(zip(refs, ray.get(list(refs.values())), strict=True))


def run_seed(storage: Path, seed: int, budget: int, tpe_startup: int | None, log) -> dict:
    from genretune.search.monitoring import END_MAX_EPOCHS, END_PATIENCE
    from genretune.search.profiles import get_profile

    out: dict = {"seed": seed, "methods": {}}
    jobs: dict[str, tuple] = {}
    for method in METHODS:
        log(f"seed {seed}: {LABELS[method]} ...")
        extra = list(METHODS[method])
        if tpe_startup is not None and method.startswith(("d_", "e_")):
            extra += ["--tpe-startup", str(tpe_startup)]
        run = run_method(storage, method, seed, budget, get_profile("demo").epochs, extra)
        s = run["settings"]
        points = curve_points(run["rows"], budget)
        for point in points.values():
            tid = point["trial_id"]
            flat = run["configs"][tid]
            point["config"] = flat
            point["trial_ended"] = run["ended"][tid]
            point["key"] = json.dumps(flat, sort_keys=True, default=str) + s.decision
            own_end = run["ended"][tid] in (END_PATIENCE, END_MAX_EPOCHS)
            trial_dir = run["path"] / f"trial_{tid}" if own_end else None
            if jobs.get(point["key"], (None, None, None))[2] is None:
                jobs[point["key"]] = (flat, s.decision == "tuned", trial_dir)
        out["methods"][method] = {
            "objective": run["metric"].removeprefix("best_"),
            "points": points,
            "curve": [(e, v) for e, v, _ in run["rows"]],
            "trials": len(run["configs"]),
            "trial_epochs": len(run["rows"]),
            "wall_s": run["wall_s"],
        }
        log(
            f"  {len(run['configs'])} trials, {len(run['rows'])} trial-epochs, "
            f"{run['wall_s']:.0f}s; best {points['1.0']['best']:.4f}"
        )
        if method == "d_tpe_asha":
            seeded = [t for t, c in run["configs"].items() if c == {**c, **s.baseline}]
            if seeded and run["ended"][seeded[0]] in (END_PATIENCE, END_MAX_EPOCHS):
                # The check: (d)'s seed-point trial from its checkpoint vs (a), the same
                # config retrained from scratch.
                check = (run["configs"][seeded[0]], False, run["path"] / f"trial_{seeded[0]}")
                jobs["a_check"] = check
    # The baseline trained alone, as the default search's settings define it.
    default = settings_for_method(storage, seed, budget, [])
    seed_config = {**default.base.to_flat(), **default.baseline, "seed": seed}
    jobs["a"] = (seed_config, False, None)
    n_retrain = sum(1 for *_, d in jobs.values() if d is None)
    log(
        f"seed {seed}: test F1 of {len(jobs)} configurations ({n_retrain} retrained, the "
        "others from the checkpoints of trials that ended on their own) ..."
    )
    retrained = test_all(jobs)
    for method in METHODS:
        for point in out["methods"][method]["points"].values():
            point.update(retrained[point.pop("key")])
        log(f"  {LABELS[method]}: test F1 {out['methods'][method]['points']['1.0']['test_f1']:.4f}")
    a = retrained["a"]
    out["methods"]["a_seed_config"] = {"test_f1": a["test_f1"], "trial_epochs": a["epochs_run"]}
    log(f"  {LABELS['a_seed_config']}: test F1 {a['test_f1']:.4f} after {a['epochs_run']} epochs")
    if "a_check" in retrained:
        check = retrained["a_check"]
        out["checkpoint_vs_retrain"] = {
            "checkpoint_test_f1": check["test_f1"],
            "retrain_test_f1": a["test_f1"],
            "abs_diff": abs(check["test_f1"] - a["test_f1"]),
            "same_best_epoch": check["best_epoch"] == a["best_epoch"],
        }
        log(f"  check, (d)'s seed-point checkpoint vs (a): {out['checkpoint_vs_retrain']}")
    b_final = out["methods"]["b_random_no_stop"]["points"]["1.0"]["best"]
    d_rows = [(e, v, None) for e, v in out["methods"]["d_tpe_asha"]["curve"]]
    out["d_reaches_b_final_at"] = first_reach(d_rows, b_final, budget)
    return out


def _mean_sd(values: list[float]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    return f"{np.mean(values):.3f}±{np.std(values):.3f}"


def summarise(runs: list[dict], budget: int) -> dict:
    table = {}
    for method in LABELS:
        rows = [r["methods"][method] for r in runs]
        if method == "a_seed_config":
            table[method] = {"test_f1": [r["test_f1"] for r in rows]}
            continue
        table[method] = {
            f: {
                "best": [r["points"][f]["best"] for r in rows],
                "test_f1": [r["points"][f]["test_f1"] for r in rows],
            }
            for f in map(str, FRACTIONS)
        }
        table[method]["trials"] = [r["trials"] for r in rows]
    reach = [r["d_reaches_b_final_at"] for r in runs]
    d_test = np.mean(table["d_tpe_asha"]["1.0"]["test_f1"])
    a_test = np.mean(table["a_seed_config"]["test_f1"])
    goals = {
        "d_reaches_b_final_at": reach,
        "goal_budget_third_met": all(x is not None and x <= 1 / 3 for x in reach),
        "d_test_over_a_relative": float(d_test / a_test - 1),
        "goal_test_plus_20pct_met": bool(d_test >= 1.2 * a_test),
    }
    checks = [r["checkpoint_vs_retrain"] for r in runs if "checkpoint_vs_retrain" in r]
    sources = [
        p.get("from")
        for r in runs
        for name, m in r["methods"].items()
        if name != "a_seed_config"
        for p in m["points"].values()
    ]
    return {
        "table": table,
        "goals": goals,
        "budget_epochs": budget,
        "test_f1_sources": {k: sources.count(k) for k in ("checkpoint", "retrain")},
        "checkpoint_vs_retrain_max_abs_diff": max((c["abs_diff"] for c in checks), default=None),
        "checkpoint_vs_retrain_checks": len(checks),
    }


def _sources_line(summary: dict) -> str:
    n = summary.get("test_f1_sources", {})
    diff = summary.get("checkpoint_vs_retrain_max_abs_diff")
    check = (
        "no seed-point trial ended on its own to check against a retrain"
        if diff is None
        else f"check against a retrain of the same config: max |diff| {diff:.2g} over "
        f"{summary['checkpoint_vs_retrain_checks']} seed(s)"
    )
    return (
        f"test F1 per (method, budget point): {n.get('retrain', 0)} retrained from scratch "
        f"(trials cut by ASHA or the budget), {n.get('checkpoint', 0)} from the best checkpoint "
        f"of a trial that ended on its own ({check})"
    )


def print_tables(summary: dict) -> str:
    lines = [
        f"budget: {summary['budget_epochs']} trial-epochs per search; mean±sd over seeds",
        "",
        "| method | trials | best val objective 25% / 50% / 100% | test F1 25% / 50% / 100% |",
        "|---|---|---|---|",
    ]
    for method, label in LABELS.items():
        t = summary["table"][method]
        if method == "a_seed_config":
            lines.append(f"| {label} | 1 | - | {_mean_sd(t['test_f1'])} |")
            continue
        best = " / ".join(_mean_sd(t[str(f)]["best"]) for f in FRACTIONS)
        test = " / ".join(_mean_sd(t[str(f)]["test_f1"]) for f in FRACTIONS)
        lines.append(f"| {label} | {np.mean(t['trials']):.1f} | {best} | {test} |")
    if summary.get("tpe_startup") is not None:
        lines += ["", f"(d) and (e) ran with --tpe-startup {summary['tpe_startup']}."]
    g = summary["goals"]
    reach = ", ".join("never" if x is None else f"{x:.0%}" for x in g["d_reaches_b_final_at"])
    lines += [
        "",
        "(e) optimises the tuned-rule validation F1, so its validation column is not comparable",
        "with the others; its test F1 uses the rule fitted on validation.",
        "",
        _sources_line(summary),
        "",
        f"budget fraction at which (d) first reaches (b)'s final best, per seed: {reach} "
        f"(goal <= 33%: {'met' if g['goal_budget_third_met'] else 'not met'})",
        f"test F1 of (d) vs (a): {g['d_test_over_a_relative']:+.1%} relative "
        f"(goal >= +20%: {'met' if g['goal_test_plus_20pct_met'] else 'not met'})",
    ]
    return "\n".join(lines)


def plot(runs: list[dict], summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    budget = summary["budget_epochs"]
    for method, label in LABELS.items():
        if method == "a_seed_config":
            continue
        for i, run in enumerate(runs):
            curve = run["methods"][method]["curve"][:budget]
            xs = [e for e, _ in curve]
            ys = np.maximum.accumulate([v for _, v in curve])
            left.plot(
                xs,
                ys,
                color=f"C{list(LABELS).index(method)}",
                alpha=0.8,
                label=label if i == 0 else None,
            )
    left.set_xlabel("cumulative trial-epochs")
    left.set_ylabel("best-so-far validation objective")
    left.legend(fontsize=8)
    names = list(LABELS)
    values = [
        summary["table"][m]["test_f1"]
        if m == "a_seed_config"
        else summary["table"][m]["1.0"]["test_f1"]
        for m in names
    ]
    right.bar(
        range(len(names)),
        [np.mean(v) for v in values],
        yerr=[np.std(v) for v in values],
        color=[f"C{i}" for i in range(len(names))],
    )
    right.set_xticks(range(len(names)), [m.split("_")[0] for m in names])
    right.set_ylabel("held-out test F1 (best config retrained)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def write_outputs(summary: dict, runs: list[dict], out: Path) -> None:
    text = print_tables(summary)
    print("\n" + text)
    startup, budget = summary.get("tpe_startup"), summary["budget_epochs"]
    stem = "search_efficiency"
    stem += "" if budget == DEFAULT_BUDGET_EPOCHS else f"_budget{budget}"
    stem += "" if startup is None else f"_tpe{startup}"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(
        json.dumps({"summary": summary, "runs": runs}, indent=1, default=float)
    )
    (out / f"{stem}.md").write_text(text + "\n")
    plot(runs, summary, out / f"{stem}.png")
    print(f"wrote {out / stem}.json, .md and .png ({summary['wall_s']:.0f}s)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--budget-epochs", type=int, default=DEFAULT_BUDGET_EPOCHS)
    parser.add_argument(
        "--tpe-startup",
        type=int,
        help="--tpe-startup for (d) and (e) (default: the search's default)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    if args.seeds < 1 or args.budget_epochs < 4:
        parser.error("--seeds must be >= 1 and --budget-epochs >= 4")

    import ray

    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    began = time.monotonic()

    def log(text: str) -> None:
        print(f"[{time.monotonic() - began:6.0f}s] {text}", flush=True)

    runs = []
    with tempfile.TemporaryDirectory(prefix="genretune-bench-") as storage:
        for seed in range(args.seeds):
            runs.append(run_seed(Path(storage), seed, args.budget_epochs, args.tpe_startup, log))
    ray.shutdown()
    summary = summarise(runs, args.budget_epochs)
    summary["wall_s"] = time.monotonic() - began
    summary["tpe_startup"] = args.tpe_startup
    write_outputs(summary, runs, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
