"""Replay searches against the learning-curve bank: search strategies compared on many paired
seeds in minutes, with the searcher, scheduler and stoppers `genretune search` builds.

A strategy is a set of `genretune search` flags (on the demo profile). Built in (their flags in
hposim/strategies.py, shared with search_efficiency.py):

  random-fifo       random search, every trial runs every epoch
  random-asha       random search with Ray's ASHA and patience
  default           genretune search as it ships
  previous-default  what it shipped with before the simulator chose
  one-epoch-top-k   every configuration one epoch, the best K trained on (a baseline)
  hyperband         Ray's HyperBandScheduler over random search (a baseline)
  bohb              Ray's TuneBOHB with HyperBandForBOHB (a baseline; hpbandster, ConfigSpace)

(the baselines' searcher and scheduler come from hposim/baselines.py), and any other as
NAME="FLAGS" with --strategy, e.g.
  --strategy "tpe4=--tpe-startup 4" --strategy "tuned=--decision tuned"
  --strategy "misled=--baseline {worst_baseline}"   (the bank's worst configuration as baseline)

For every strategy, seed and budget (trial-epochs; with --budget-seconds also compute-seconds:
the recorded epoch seconds, N mean epochs of the bank) it reports the median and 95% bootstrap CI
over seeds of (i) the budget fraction at which the search first reaches random-fifo's final best
validation objective (same seed; not reached = infinite) and the simulated wall time at which
it does, as a share of random-fifo's whole search, (ii) the test F1 of the configuration
it would pick (its best trial, trained to its end as `genretune train` does), (iii) that
configuration's regret against the bank's oracle, (iv) the compute-seconds to random-fifo's
final best, and the paired test-F1 difference against every other strategy
(`paired_test_f1_diff_vs`). Seeds are paired: seed s is `--seed s` in every strategy.

    python benchmarks/simulate.py                    # 200 seeds, budgets 90,150,300, 2 workers
    python benchmarks/simulate.py --quick            # a smoke run (seconds)
    python benchmarks/simulate.py --strategies default,tpe4 --strategy "tpe4=--tpe-startup 4"
    python benchmarks/simulate.py --validate benchmarks/results/search_efficiency.json
    python benchmarks/simulate.py --strategies default,one-epoch-top-k,hyperband,bohb \\
        --budget-seconds 90,150,300 --bank benchmarks/data/curve_bank_task2.npz

Writes --json (default benchmarks/results/simulate.json) and a .md and .png beside it.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from provenance import provenance

from hposim.bank import DEFAULT_PATH, load_bank
from hposim.curves import DEFAULT_NOISE_MODEL, NOISE_MODELS
from hposim.evaluation import bank_summary, trial_level_check, validation_against_real
from hposim.report import markdown, plot_regret, print_tables
from hposim.settings import bank_flags, demo_settings, fit_to_bank
from hposim.simtask import (  # noqa: F401 (all_knowing.py reaches them here)
    _STATE,
    _init,
    chosen_test_f1,
    mean_epoch_seconds,
    settings_for,
    simulate_task,
)
from hposim.strategies import NAMED, REFERENCES
from hposim.summary import summarise

RESULTS = Path(__file__).resolve().parent / "results"
BUILTIN = NAMED


def worst_baseline_file(bank, directory: Path) -> Path:
    """A --baseline file holding the bank's worst configuration and decision rule (lowest
    best-epoch validation F1 of its mean curve): a deliberately misleading baseline."""
    from hposim.bank import RULES
    from hposim.curves import Features, distinct_configs

    space = fit_to_bank(demo_settings(bank_flags(bank.provenance)), bank.genre_counts).space
    configs = distinct_configs(bank, Features(bank, space))
    space_rules = [i for i, (t, _) in enumerate(RULES) if t is not None]
    best = configs.val.max(axis=1)[:, space_rules]  # (configs, rules)
    c, r = np.unravel_index(np.argmin(best), best.shape)
    threshold, top_k = RULES[space_rules[r]]
    path = directory / "worst_baseline.json"
    path.write_text(json.dumps({**configs.knobs[c], "threshold": threshold, "top_k": top_k}))
    return path


def parse_strategies(names: str, custom: list[str], epochs: int) -> dict[str, list[str]]:
    defined = dict(BUILTIN)
    for spec in custom:
        name, sep, flags = spec.partition("=")
        if not sep or not name.strip():
            raise ValueError(f'--strategy {spec!r}: expected NAME="FLAGS"')
        if name.strip() in BUILTIN:
            raise ValueError(
                f"--strategy {spec!r}: {name.strip()} is built in "
                "(benchmarks/hposim/strategies.py); give a new name"
            )
        defined[name.strip()] = flags
    chosen = [n.strip() for n in names.split(",") if n.strip()]
    chosen += [
        n.strip().partition("=")[0] for n in custom if n.strip().partition("=")[0] not in chosen
    ]
    unknown = [n for n in chosen if n not in defined]
    if unknown:
        raise ValueError(
            f"--strategies: unknown {', '.join(unknown)} (built in: {', '.join(BUILTIN)}; "
            'define others with --strategy NAME="FLAGS")'
        )
    ordered = [*REFERENCES, *[n for n in chosen if n not in REFERENCES]]
    out = {}
    for n in ordered:
        try:
            out[n] = shlex.split(defined[n].replace("{epochs}", str(epochs)))
        except ValueError as exc:
            raise ValueError(f"--strategy {n}: {exc}") from None
    return out


def strategy_problem(flags: list[str], budget: int, workers: int, bank) -> str | None:
    """Why `flags` are not `genretune search` flags the simulator can replay, or None (checked
    before the pool starts: an error inside a pool process would stall the run)."""
    import contextlib
    import io

    from genretune.data import InputError
    from hposim.replay import SIMULATED_METRICS

    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said):
            s = settings_for(flags, 0, budget, workers, bank)
    except (InputError, SystemExit) as exc:
        lines = [line for line in said.getvalue().splitlines() if "error:" in line]
        return lines[-1].split("error:", 1)[1].strip() if lines else str(exc)
    if s.objectives:
        return "--objectives: the simulator replays single-objective searches"
    if s.metric not in SIMULATED_METRICS:
        return f"--metric {s.metric}: the simulator replays {', '.join(SIMULATED_METRICS)}"
    return None


def fill_placeholders(strategies: dict[str, list[str]], bank, directory: Path):
    """`{worst_baseline}` in a strategy's flags: the path of worst_baseline_file."""
    if not any("{worst_baseline}" in " ".join(f) for f in strategies.values()):
        return strategies
    path = str(worst_baseline_file(bank, directory))
    return {n: [a.replace("{worst_baseline}", path) for a in f] for n, f in strategies.items()}


def _is_surrogate_file(path: str) -> bool:
    try:
        payload = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(payload, dict) and {"bank_sha256", "weights"} <= set(payload)


REAL_WORKERS = 2  # search_efficiency.py's --max-concurrent


def simulated_survivors(flags: str, budget: int, seeds: range) -> dict[str, list[np.ndarray]]:
    """The first RANK_EPOCHS values of the search objective of every trial that ran that long
    in replays of a strategy as search_efficiency.py runs it (flags as its JSON records them):
    the trials the early cuts let through, chosen as in the real searches."""
    from hposim.evaluation import RANK_EPOCHS
    from hposim.replay import replay

    bank, source = _STATE["bank"], _STATE["source"]
    argv = shlex.split(flags.replace("{epochs}", str(bank.epochs)))
    out: dict[str, list[np.ndarray]] = {}
    for seed in seeds:
        s = settings_for(argv, seed, budget, REAL_WORKERS, bank)
        log = replay(s, source, REAL_WORKERS, np.random.default_rng(seed))
        key = s.metric.removeprefix("best_")
        ran = np.bincount(np.array(log.trial_of, dtype=int), minlength=len(log.trials))
        for trial, epochs in zip(log.trials, ran, strict=True):
            if epochs >= RANK_EPOCHS:
                series = trial.curve.tuned_val if key == "tuned_val_f1" else trial.curve.own_val
                out.setdefault(key, []).append(series[:RANK_EPOCHS])
    return out


def run_all(
    args, strategies: dict[str, list[str]], budgets: list[int], budgets_seconds: list[int]
) -> dict:
    tasks = [
        (name, flags, seed, budgets, args.workers, budgets_seconds)
        for seed in range(args.first_seed, args.first_seed + args.seeds)
        for name, flags in strategies.items()
    ]
    initargs = (str(args.bank), args.surrogate, not args.no_noise, args.noise_model)
    results: dict = {name: {} for name in strategies}
    began = time.monotonic()
    processes = max(1, min(args.processes, len(tasks)))
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(processes, initializer=_init, initargs=initargs) as pool:
        for n, out in enumerate(pool.imap_unordered(simulate_task, tasks, chunksize=4), 1):
            results[out["name"]][out["seed"]] = out["budgets"]
            if n % max(1, len(tasks) // 10) == 0 or n == len(tasks):
                print(
                    f"  {n}/{len(tasks)} searches replayed ({time.monotonic() - began:.0f}s)",
                    file=sys.stderr,
                    flush=True,
                )
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bank", type=Path, default=DEFAULT_PATH, help="the curve bank (.npz)")
    p.add_argument("--strategies", default="random-fifo,random-asha,default")
    p.add_argument(
        "--strategy", action="append", default=[], metavar='NAME="FLAGS"',
        help="define a strategy from genretune search flags (repeatable)",
    )  # fmt: skip
    p.add_argument("--budget-epochs", default="90,150,300", help="budgets in trial-epochs")
    p.add_argument(
        "--budget-seconds", default="",
        help="budgets in compute-seconds, as N mean epochs of the bank (e.g. 90,150,300: "
        "the same budgets counted in the recorded epoch seconds)",
    )  # fmt: skip
    p.add_argument("--workers", type=int, default=2, help="concurrent trials (simulated)")
    p.add_argument("--seeds", type=int, default=200)
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    p.add_argument(
        "--json",
        type=Path,
        help="output (default benchmarks/results/simulate.json; with --quick a temporary dir)",
    )
    p.add_argument("--surrogate", help="surrogate parameters file (default: beside the bank)")
    p.add_argument("--no-noise", action="store_true", help="surrogate curves without noise")
    p.add_argument(
        "--noise-model",
        choices=NOISE_MODELS,
        default=DEFAULT_NOISE_MODEL,
        help="by-quality-and-seed (the default): noise scaled to the repeated configurations "
        "nearest in quality, one training seed's per search; pooled: any repeated run's noise "
        "for any trial (what result sets recording no noise model used)",
    )
    p.add_argument(
        "--validate", default="", help="search_efficiency.py JSON files: real curves to check"
    )
    p.add_argument("--quick", action="store_true", help="8 seeds, budgets 30,60: a smoke run")
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.budget_epochs = min(args.seeds, 8), "30,60"
    try:
        budgets = sorted({int(b) for b in args.budget_epochs.split(",")})
    except ValueError:
        p.error(f"--budget-epochs {args.budget_epochs}: expected integers like 90,150,300")
    try:
        budgets_seconds = sorted({int(b) for b in args.budget_seconds.split(",") if b.strip()})
    except ValueError:
        p.error(f"--budget-seconds {args.budget_seconds}: expected integers like 90,150,300")
    if min(budgets + budgets_seconds) < 1 or min(args.workers, args.seeds, args.processes) < 1:
        p.error("--budget-epochs, --budget-seconds, --workers, --seeds, --processes must be >= 1")
    if not args.bank.is_file():
        p.error(f"--bank {args.bank}: not found (record it with benchmarks/curve_bank.py)")
    missing = [f for f in args.validate.split(",") if f and not Path(f).is_file()]
    if missing:
        p.error(f"--validate {missing[0]}: file not found")
    if args.surrogate and Path(args.surrogate).exists() and not _is_surrogate_file(args.surrogate):
        p.error(f"--surrogate {args.surrogate}: not a surrogate parameters file (not replaced)")
    if args.json is None:
        quick = Path(tempfile.mkdtemp(prefix="simulate-quick-")) if args.quick else RESULTS
        args.json = quick / "simulate.json"
    began = time.monotonic()
    bank = load_bank(args.bank)
    try:
        strategies = parse_strategies(args.strategies, args.strategy, bank.epochs)
    except ValueError as exc:
        p.error(str(exc))
    shown_flags = {n: " ".join(f) for n, f in strategies.items()}  # placeholders unfilled
    scratch = Path(tempfile.mkdtemp(prefix="simulate-"))
    strategies = fill_placeholders(strategies, bank, scratch)
    for name, flags in strategies.items():
        problem = strategy_problem(flags, budgets[0], args.workers, bank)
        if problem:
            shutil.rmtree(scratch, ignore_errors=True)
            p.error(f"--strategy {name}: {problem}")
    print(
        f"simulating {len(strategies)} strategies x {args.seeds} seeds, budgets "
        f"{budgets} trial-epochs, {args.workers} workers, on {args.bank.name} "
        f"({bank.n_runs} runs)",
        file=sys.stderr,
    )
    _init(str(args.bank), args.surrogate, not args.no_noise, args.noise_model)
    summary = bank_summary(_STATE["bank"], _STATE["source"])
    try:
        results = run_all(args, strategies, budgets, budgets_seconds)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    payload = {
        "provenance": provenance(shown_flags),
        **summary,
        "settings": {
            "bank": args.bank.name,
            "bank_provenance": bank.provenance.get("code_commit"),
            "seeds": args.seeds,
            "first_seed": args.first_seed,
            "workers": args.workers,
            "budgets": [*budgets, *[f"{b}s" for b in budgets_seconds]],
            "mean_epoch_seconds": mean_epoch_seconds(bank),
            "strategy_flags": shown_flags,
            "noise": not args.no_noise,
            "noise_model": args.noise_model,
        },
        "strategies": summarise(
            results, [*budgets, *[f"{b}s" for b in budgets_seconds]], summary["oracle_test_f1"]
        ),
    }
    if args.validate:
        real = [Path(f) for f in args.validate.split(",") if f]
        payload["validation"] = validation_against_real(results, real)
        payload["trial_check"] = trial_level_check(
            _STATE["source"], real, survivors=simulated_survivors
        )
    payload["wall_seconds"] = round(time.monotonic() - began, 1)
    print_tables(payload)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(payload, indent=1) + "\n")
    args.json.with_suffix(".md").write_text(markdown(payload))
    plot_regret(results, budgets, summary["oracle_test_f1"], args.json.with_suffix(".png"))
    print(f"wrote {args.json} (.md, .png) in {payload['wall_seconds']:.0f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
