"""The searcher part: the default search's searcher and scheduler objects, driven as the
simulator drives them (hposim.replay: 32 workers, every result in simulated time) but with the
SQLite study storage a real search uses, to 1,000 and 3,000 trials. Each call of suggest,
on_trial_result and on_trial_complete is timed with the number of trials started so far."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

CALLS = ("suggest", "on_trial_result", "on_trial_complete")


def _timed(obj: Any, name: str, trials: Callable[[], int], sink: list) -> None:
    """Replace obj.name by a wrapper that records (trials started, milliseconds)."""
    call = getattr(obj, name)

    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        out = call(*args, **kwargs)
        sink.append((trials(), (time.perf_counter() - start) * 1000))
        return out

    setattr(obj, name, wrapper)


def stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {"median": float("nan"), "p95": float("nan"), "max": float("nan"), "calls": 0}
    a = np.asarray(values)
    return {
        "median": round(float(np.median(a)), 3),
        "p95": round(float(np.percentile(a, 95)), 3),
        "max": round(float(a.max()), 3),
        "calls": int(a.size),
    }


def run_searcher_part(
    trials: int, workers: int, seed: int, extra_flags: list[str], window: int = 100
) -> dict[str, Any]:
    """Latency of each call in windows of `window` trials, driver CPU per trial-epoch, and
    the stats at each hundredth... returned as {"curve": {...}, "at": {n: {...}}}."""
    import optuna

    from genretune.search.algorithms import build_algorithms
    from genretune.search.study_storage import open_rdb_storage
    from hposim.bank import load_bank
    from hposim.curves import CurveSource
    from hposim.replay import replay
    from hposim.settings import bank_flags, demo_settings, fit_to_bank

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    bank = load_bank()
    argv = [*bank_flags(bank.provenance), *extra_flags, "--seed", str(seed)]
    argv += ["--num-samples", str(trials), "--max-concurrent", str(workers)]
    settings = fit_to_bank(demo_settings(argv), bank.genre_counts)
    source = CurveSource(bank, settings.space, noise=True)
    with tempfile.TemporaryDirectory(prefix="scale-searcher-") as tmp:
        storage = open_rdb_storage(f"sqlite:///{Path(tmp) / 'optuna.db'}")
        algorithms = build_algorithms(settings, storage)
        started = [0]
        calls: dict[str, list] = {name: [] for name in CALLS}
        searcher = algorithms.searcher
        original_suggest = searcher.suggest

        def counting_suggest(trial_id):
            started[0] += 1
            return original_suggest(trial_id)

        searcher.suggest = counting_suggest
        for name in CALLS:
            _timed(searcher, name, lambda: started[0], calls[name])
        cpu0, wall0 = time.process_time(), time.perf_counter()
        log = replay(settings, source, workers, np.random.default_rng(seed), algorithms=algorithms)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    curve = {}
    for name, rows in calls.items():
        by_window: dict[int, list[float]] = {}
        for n, ms in rows:
            by_window.setdefault((max(n, 1) - 1) // window, []).append(ms)
        curve[name] = {
            str((w + 1) * window): stats(values) for w, values in sorted(by_window.items())
        }
    return {
        "trials": len(log.trials),
        "trial_epochs": log.n_results,
        "workers": workers,
        "flags": extra_flags,
        "driver_cpu_ms_per_trial_epoch": round(cpu * 1000 / max(1, log.n_results), 3),
        "wall_s": round(wall, 1),
        "curve": curve,
    }


def at(result: dict[str, Any], n: int) -> dict[str, Any]:
    """The stats of the window that ends at n trials, per call (`suggest_ms`, ...)."""
    return {f"{name}_ms": result["curve"][name].get(str(n), stats([])) for name in CALLS}
