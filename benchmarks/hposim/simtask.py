"""One simulated search per strategy, seed and budget: the work simulate.py's process pool
does. A budget is in trial-epochs (the `--budget-epochs` stopper `genretune search` builds) or
in compute-seconds (the recorded epoch seconds of every result; the searcher sees the
trial-epoch budget of the same size in mean epochs, for what it derives from a budget)."""

from __future__ import annotations

import json

import numpy as np

from hposim.bank import load_bank
from hposim.settings import bank_flags, demo_settings, fit_to_bank

_STATE: dict = {}  # the pool process's bank and curve source


def settings_for(flags: list[str], seed: int, budget: int, workers: int, bank):
    argv = [
        *bank_flags(bank.provenance),
        *flags,
        "--seed", str(seed),
        "--budget-epochs", str(budget),
        "--max-concurrent", str(workers),
        "--num-samples", "100000",  # the budget ends a search
    ]  # fmt: skip
    return fit_to_bank(demo_settings(argv), bank.genre_counts)


def _init(
    bank_path: str, surrogate_file: str | None, noise: bool, noise_model: str | None = None
) -> None:
    from pathlib import Path

    import optuna
    import torch

    # One thread per pool process: Optuna's GP sampler runs on torch, which would otherwise
    # start a thread per core in every process (several times slower on two cores).
    torch.set_num_threads(1)

    from hposim.curves import DEFAULT_NOISE_MODEL, CurveSource
    from hposim.fitting import load_or_fit_surrogate

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    bank = load_bank(Path(bank_path))
    space = fit_to_bank(demo_settings(bank_flags(bank.provenance)), bank.genre_counts).space
    source = CurveSource(bank, space, noise=noise, noise_model=noise_model or DEFAULT_NOISE_MODEL)
    source.surrogate = load_or_fit_surrogate(source, bank_path, surrogate_file)
    _STATE.update(bank=bank, source=source)


def chosen_test_f1(log, s) -> np.ndarray:
    """After each result of a replay `log` of a search with settings `s`: the test F1 of the
    configuration the search would then pick (the trial with the best objective so far),
    retrained to the end as `genretune train` does."""
    objective, patience = s.base.objective, s.base.optim.patience
    final_test = np.array([t.curve.trained_to_end(objective, patience)[2] for t in log.trials])
    values = np.array(log.objective)
    best = np.maximum.accumulate(values)
    # The first result that reached each best-so-far value names the chosen trial.
    leader = np.zeros(len(values), dtype=int)
    for i in range(1, len(values)):
        leader[i] = i if values[i] > best[i - 1] else leader[i - 1]
    return final_test[np.array(log.trial_of)[leader]]


def mean_epoch_seconds(bank) -> float:
    """The bank's mean recorded epoch time: a compute-seconds budget of B mean epochs."""
    return float(np.mean(bank.epoch_seconds))


def budget_key(budget: int, seconds: bool) -> int | str:
    """How results name a budget: 150 (trial-epochs), or "150s" (the compute-seconds of 150
    mean epochs)."""
    return f"{budget}s" if seconds else budget


def _algorithms(name: str, s, workers: int, seed: int, seconds: float | None):
    """What the replay runs: a baseline's objects, or `genretune search`'s (None: the replay
    builds them) with a compute-seconds budget in place of the trial-epoch one."""
    from hposim.baselines import KINDS, ComputeBudgetStopper, baseline_algorithms

    mean = mean_epoch_seconds(_STATE["bank"])
    if name in KINDS:
        return baseline_algorithms(name, s, workers, seed, seconds, mean)
    if seconds is None:
        return None
    from genretune.search.algorithms import build_algorithms

    built = build_algorithms(s, storage=None)
    built.stoppers = [x for x in built.stoppers if type(x).__name__ != "BudgetStopper"]
    built.stoppers.append(ComputeBudgetStopper(seconds))
    return built


def _measured(log, s) -> dict:
    """Per result of a replay: best-so-far objective, best-so-far tuned-rule val F1, the
    chosen configuration's test F1, simulated wall time and cumulative compute-seconds."""
    values = np.array(log.objective)
    # Every result on one validation measure, whatever the search optimised: F1 at the rule
    # tuned on validation (the rule does not change training: the same models measured alike).
    pairs = zip(log.trial_of, log.epoch_of, strict=True)
    tuned = [log.trials[t].curve.tuned_val[e - 1] for t, e in pairs]
    pairs = zip(log.trial_of, log.epoch_of, strict=True)
    spent = [log.trials[t].curve.epoch_seconds[e - 1] for t, e in pairs]
    return {
        "best": np.maximum.accumulate(values),
        "best_tuned": np.maximum.accumulate(np.array(tuned)),
        "chosen_test": chosen_test_f1(log, s),
        "trial_of": np.array(log.trial_of),
        "seconds": np.array(log.times),  # simulated wall time of each result
        "compute": np.cumsum(spent),
    }


def _cut(measured: dict, n: int) -> dict:
    out = {k: v[:n] for k, v in measured.items() if k != "trial_of"}
    out["trials"] = int(len(set(measured["trial_of"][:n].tolist())))
    return out


def simulate_task(task: tuple) -> dict:
    """One strategy and seed over every budget: one replay per group of budgets whose
    settings differ only in the budget (a shorter budget is then a prefix of the longer)."""
    from hposim.baselines import KINDS
    from hposim.replay import replay

    name, flags, seed, budgets, workers, *rest = task
    budgets_seconds = rest[0] if rest else []
    bank = _STATE["bank"]
    mean = mean_epoch_seconds(bank)
    plans = [(b, None) for b in budgets] + [(b, b * mean) for b in budgets_seconds]
    groups: dict[str, list[tuple[int, float | None]]] = {}
    built = {}
    for budget, seconds in plans:
        s = settings_for(flags, seed, budget, workers, bank)
        key = {**s.to_json(), "budget_epochs": None, "seconds": seconds is not None}
        if name in KINDS:  # a baseline's plan depends on its budget: no prefixes
            key["plan"] = budget
        groups.setdefault(json.dumps(key, sort_keys=True, default=str), []).append(
            (budget, seconds)
        )
        built[(budget, seconds)] = s
    out = {"name": name, "seed": seed, "budgets": {}}
    for group in groups.values():
        longest = max(group, key=lambda p: p[0])
        s = built[longest]
        seconds = longest[1]
        algorithms = _algorithms(name, s, workers, seed, seconds)
        log = replay(s, _STATE["source"], workers, np.random.default_rng(seed), None, algorithms)
        measured = _measured(log, s)
        for budget, budget_s in group:
            if budget_s is None:
                n = min(budget, len(measured["best"]))
            else:  # up to and with the result that spent the budget (as the stopper ends)
                n = int(np.searchsorted(measured["compute"], budget_s, side="left")) + 1
                n = min(n, len(measured["best"]))
            out["budgets"][budget_key(budget, budget_s is not None)] = {
                **_cut(measured, n),
                "budget": budget_s if budget_s is not None else budget,
                "unit": "seconds" if budget_s is not None else "epochs",
            }
    return out
