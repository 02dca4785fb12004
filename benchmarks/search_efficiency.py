"""Search efficiency with real training, at an equal budget of trial-epochs: the confirmation
of what benchmarks/simulate.py finds on the learning-curve bank.

On the demo profile (synthetic data), for each seed, every method is a `genretune search` with
`--budget-epochs B --max-concurrent 2 --seed S` and a strategy's flags (hposim/strategies.py,
the same list the simulator runs, plus any --strategy NAME="FLAGS"):

  random-fifo   random search, every trial runs every epoch
  random-asha   random search with ASHA and patience
  default       genretune search as it ships
  baseline      (no search) the hand-tuned baseline configuration trained alone, at its own
                rule (threshold 0.5) with its best epoch by validation F1 at that rule

For each method it reports the best validation objective and the held-out test F1 of the
configuration the search would pick, at 25/50/100% of the budget, and the budget fraction at
which it first reaches random-fifo's final best (same seed). The test F1 is that of the
configuration trained to its end with `genretune train`'s code: a trial cut by ASHA or the
budget is retrained from scratch; one that ended on its own is scored from its best checkpoint,
which a retrain reproduces exactly (each seed checks this on the baseline).

    python benchmarks/search_efficiency.py          # 150 trial-epochs, 3 seeds (~1 h, 2 cores)
    python benchmarks/search_efficiency.py --seeds 1 --budget-epochs 20   # a smoke run
    # the second task (never used to choose the default), into its own directory:
    python benchmarks/search_efficiency.py --bank benchmarks/data/curve_bank_task2.npz \
        --seeds 10 --out benchmarks/results/task2
    python benchmarks/search_efficiency.py --strategy "old=--tpe-startup 10 --decision space"
    # one more method on the seeds of an earlier run (only what a seed lacks is run):
    python benchmarks/search_efficiency.py --seeds 5 --strategy "g1=--grace-period 1" \
        --add-to benchmarks/results/search_efficiency.json
    # more seeds for some methods only (random-fifo and random-asha always run):
    python benchmarks/search_efficiency.py --first-seed 5 --seeds 5 --methods default \
        --add-to benchmarks/results/search_efficiency.json   (+ its --strategy flags)

The tables give each method's median over the seeds it ran, with a bootstrap 95% CI, and its
test F1 minus random-asha's paired by seed.

Writes benchmarks/results/search_efficiency[_budgetN].json, .md and .png.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from hposim.measures import first_reach
from hposim.real_report import (
    BASELINE,
    DEFAULT_BUDGET_EPOCHS,
    FRACTIONS,
    earlier_runs,
    summarise,
    write_outputs,
)
from hposim.real_search import TASK, _search_argv, settings_for_method, task_epochs
from hposim.strategies import NAMED, REFERENCES, STRATEGIES, VARIANTS

RESULTS = Path(__file__).resolve().parent / "results"


def run_method(storage: Path, method: str, seed: int, budget: int, epochs: int, extra: list[str]):
    """The experiment's rows in completion order: (cumulative trial-epochs, objective, config)."""
    from genretune.results.experiment import load_experiment
    from genretune.results.experiment_dir import read_end_reasons
    from genretune.search.cli.search import settings_from_argv
    from genretune.search.launch import run_search

    name = f"{method}_seed{seed}"
    settings = settings_from_argv(_search_argv(storage, name, seed, budget, epochs, extra)[1:])
    began = time.monotonic()
    run_search(settings)
    wall = time.monotonic() - began
    exp = load_experiment(name, storage)
    metric = settings.metric
    history = exp.history.sort_values(["timestamp", "time_total_s"]).reset_index(drop=True)
    # The exact config each trial trained with (fixed values and sampled ones).
    # A trial Ray created but stopped before it started (the budget ran out) has no
    # params.json and no result: it trained nothing.
    configs = {
        tid: json.loads(params.read_text())
        for tid in exp.trials["trial_id"]
        if (params := exp.path / f"trial_{tid}" / "params.json").is_file()
    }
    reasons = read_end_reasons(exp.path)
    ended = {tid: reasons.get(tid, {}).get("end_reason") for tid in configs}
    step_metric = metric.removeprefix("best_")
    rows = [
        (i + 1, float(r[step_metric]), r["trial_id"])
        for i, r in enumerate(history.to_dict("records"))
    ]
    # Every result at the rule tuned on validation, in the same order (one yardstick for all).
    tuned = [float(r.get("tuned_val_f1", np.nan)) for r in history.to_dict("records")]
    # Each trial's own per-epoch values, for checking the simulator trial by trial.
    trial_log = [
        {
            "trial_id": tid,
            "params": {k: configs[tid].get(k) for k in settings.space},
            "end_reason": ended[tid],
            **{
                key: [float(v) for v in group.sort_values("training_iteration")[key]]
                for key in ("val_f1", "tuned_val_f1")
                if key in group
            },
        }
        for tid, group in history.groupby("trial_id", sort=False)
    ]
    return {
        "rows": rows,
        "tuned": tuned,
        "trial_log": trial_log,
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
    from genretune.model.training_run import prepare_run, train_run

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
    from genretune.model.training import FitResult, build_model, decision_rule
    from genretune.model.training_run import evaluation_report
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


def baseline_alone(storage: Path, seed: int, budget: int) -> dict:
    """The baseline configuration as the hand-run log trained it: its own rule (threshold 0.5),
    best epoch and patience by validation F1 at that rule (the tuned default would pick them by
    the tuned rule's F1)."""
    s = settings_for_method(storage, seed, budget, ["--decision", "space"])
    return {**s.base.to_flat(), **s.baseline, "seed": seed}


def run_seed(
    storage: Path, seed: int, budget: int, methods: dict[str, list[str]], log, earlier=None
) -> dict:
    """One seed of every method; with `earlier` (this seed's run from an earlier JSON), only
    the methods it lacks are run and its own results (the baseline's included) are kept."""
    from genretune.search.monitoring import END_MAX_EPOCHS, END_PATIENCE

    epochs = task_epochs()
    kept = dict(earlier["methods"]) if earlier else {}
    out: dict = {**(earlier or {}), "seed": seed, "methods": kept}
    to_run = {m: f for m, f in methods.items() if m not in kept}
    jobs: dict[str, tuple] = {}
    baseline_check = None
    for method, flags in to_run.items():
        log(f"seed {seed}: {method} ({' '.join(flags) or 'as it ships'}) ...")
        run = run_method(storage, method, seed, budget, epochs, flags)
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
            "curve_tuned_rule": run["tuned"],
            "trial_log": run["trial_log"],
            "trials": len(run["configs"]),
            "trial_epochs": len(run["rows"]),
            "wall_s": run["wall_s"],
        }
        log(
            f"  {len(run['configs'])} trials, {len(run['rows'])} trial-epochs, "
            f"{run['wall_s']:.0f}s; best {points['1.0']['best']:.4f}"
        )
        as_baseline = [
            t for t, c in run["configs"].items() if s.baseline and c == {**c, **s.baseline}
        ]
        if baseline_check is None and as_baseline:
            tid = as_baseline[0]
            if run["ended"][tid] in (END_PATIENCE, END_MAX_EPOCHS) and s.decision != "tuned":
                baseline_check = (run["configs"][tid], False, run["path"] / f"trial_{tid}")
    if BASELINE not in kept:
        jobs[BASELINE] = (baseline_alone(storage, seed, budget), False, None)
        if baseline_check is not None:
            jobs["baseline_check"] = baseline_check
    n_retrain = sum(1 for *_, d in jobs.values() if d is None)
    log(f"seed {seed}: test F1 of {len(jobs)} configurations ({n_retrain} retrained) ...")
    tested = test_all(jobs)
    for method in to_run:
        for point in out["methods"][method]["points"].values():
            point.update(tested[point.pop("key")])
        log(f"  {method}: test F1 {out['methods'][method]['points']['1.0']['test_f1']:.4f}")
    if BASELINE not in kept:
        out["methods"][BASELINE] = {"test_f1": tested[BASELINE]["test_f1"]}
    if "baseline_check" in tested:
        check = tested["baseline_check"]
        out["checkpoint_vs_retrain"] = abs(check["test_f1"] - tested[BASELINE]["test_f1"])
    fifo_final = out["methods"]["random-fifo"]["points"]["1.0"]["best"]
    for method in to_run:
        values = [v for _, v in out["methods"][method]["curve"]]
        out["methods"][method]["fraction_to_random_final"] = first_reach(values, fifo_final, budget)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--budget-epochs", type=int, default=DEFAULT_BUDGET_EPOCHS)
    parser.add_argument(
        "--strategy", action="append", default=[], metavar='NAME="FLAGS"',
        help="another method, from genretune search flags (repeatable)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--bank", type=Path,
        help="run the task of this curve bank (its data and epochs, e.g. "
        "data/curve_bank_task2.npz) instead of the demo profile's",
    )  # fmt: skip
    parser.add_argument(
        "--add-to", type=Path, metavar="JSON",
        help="an earlier run's JSON (same budget): its results are kept; its seeds get the "
        "methods it lacks (--strategy) and new seeds (--first-seed, --seeds) every method",
    )  # fmt: skip
    parser.add_argument(
        "--methods", metavar="NAME,...",
        help="run only these methods (random-fifo and random-asha always run: the others are "
        "measured against them); with --add-to the others keep the seeds they have",
    )  # fmt: skip
    args = parser.parse_args()
    if args.seeds < 1 or args.budget_epochs < 4:
        parser.error("--seeds must be >= 1 and --budget-epochs >= 4")
    if args.bank is not None:
        if not args.bank.is_file():
            parser.error(f"--bank {args.bank}: not found")
        from hposim.bank import load_bank
        from hposim.settings import bank_flags

        TASK[:] = bank_flags(load_bank(args.bank).provenance)
    methods = {name: shlex.split(flags) for name, flags in STRATEGIES.items()}
    # Variants run when named; those with a simulator-only placeholder cannot run for real.
    variants = {n: f for n, f in VARIANTS.items() if "{worst_baseline}" not in f}
    for spec in args.strategy:
        name, sep, flags = spec.partition("=")
        if not sep or not name.strip() or name.strip() in (*NAMED, BASELINE):
            parser.error(f'--strategy {spec!r}: expected a new NAME="FLAGS"')
        methods[name.strip()] = shlex.split(flags)
    to_run = dict(methods)
    if args.methods:
        names = [n.strip() for n in args.methods.split(",") if n.strip()]
        unknown = sorted(set(names) - set(methods) - set(variants))
        if unknown or not names:
            known = [*methods, *variants]
            parser.error(f"--methods: unknown {unknown or args.methods!r}; known: {known}")
        methods.update({n: shlex.split(variants[n]) for n in names if n not in methods})
        to_run = {m: f for m, f in methods.items() if m in (*REFERENCES, *names)}
    earlier = (
        earlier_runs(args.add_to, args, methods, parser.error) if args.add_to else ({}, {}, None)
    )
    # Seeds of the earlier run get the methods they lack; new seeds get every method to run.
    by_seed = dict(earlier[0])
    seeds = sorted({*by_seed, *range(args.first_seed, args.first_seed + args.seeds)})
    pending = [s for s in seeds if s not in by_seed or set(to_run) - set(by_seed[s]["methods"])]
    if not pending:
        parser.error(f"--add-to {args.add_to}: has these seeds and methods already; nothing to run")

    import ray

    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    began = time.monotonic()

    def log(text: str) -> None:
        print(f"[{time.monotonic() - began:6.0f}s] {text}", flush=True)

    def save() -> None:
        """Write every seed done so far (after each seed: a crash or a stop loses one seed)."""
        runs = [by_seed[seed] for seed in seeds if seed in by_seed]
        summary = summarise(runs, list(methods), args.budget_epochs)
        summary["wall_s"] = float(earlier[1].get("wall_s", 0.0)) + time.monotonic() - began
        if "relabelled" in earlier[1]:
            summary["relabelled"] = earlier[1]["relabelled"]
        summary["strategy_flags"] = {m: " ".join(f) for m, f in methods.items()}
        summary["task_flags"] = " ".join(TASK)  # every search's data and epochs (none: demo's)
        write_outputs(summary, runs, args.out, extends=earlier[2])

    with tempfile.TemporaryDirectory(prefix="genretune-bench-") as storage:
        for seed in pending:
            by_seed[seed] = run_seed(
                Path(storage), seed, args.budget_epochs, to_run, log, earlier=by_seed.get(seed)
            )
            try:
                save()
            except Exception as exc:  # a report that cannot render yet must not stop the run
                log(f"could not write the results so far ({type(exc).__name__}: {exc})")
    ray.shutdown()
    save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
