"""What the simulator reports: the bank's oracle, baseline and noise, the surrogate's accuracy,
and per strategy and budget the paired statistics over seeds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hposim.bank import RULES, CurveBank, rule_index
from hposim.curves import CurveSource, _curve
from hposim.stats import band, median_ci
from hposim.surrogate import BASELINE_RULE, check, noise_floor_mae

DEMO_PATIENCE = 5  # `genretune train`'s patience in the demo's exported configs


def _describe_rule(index: int | str) -> str:
    if index == "tuned":
        return "the rule tuned on validation"
    threshold, top_k = RULES[index]
    parts = [f"threshold {threshold:.2f}"] if threshold is not None else []
    parts += [f"top-{top_k}"] if top_k is not None else []
    return " + ".join(parts)


def _run_curve(bank: CurveBank, runs, rule: int):
    val, test = bank.val_f1[runs].mean(axis=0), bank.test_f1[runs].mean(axis=0)
    tuned = bank.tuned_rule[runs[0]]
    return _curve(
        val, test, tuned, bank.val_pr_auc[runs[0]], bank.epoch_seconds[runs[0]], rule, None
    )


def oracle(bank: CurveBank, source: CurveSource) -> dict:
    """The best test F1 `genretune train` reaches with any bank configuration and rule
    (repeated configurations: their mean curve), with the patience of the demo."""
    best = {"test_f1": -1.0}
    for c, runs in enumerate(source.configs.runs):
        for rule in range(len(RULES)):
            curve = _run_curve(bank, runs, rule)
            epoch, val, test = curve.trained_to_end("val_f1", DEMO_PATIENCE)
            if test > best["test_f1"]:
                best = {
                    "test_f1": test,
                    "rule": _describe_rule(rule),
                    "best_epoch": epoch,
                    "config": source.configs.knobs[c],
                    "val_f1": val,
                    "runs": len(runs),
                }
        if len(runs) == 1:  # the tuned rule from the recorded run
            curve = _run_curve(bank, runs, BASELINE_RULE)
            epoch, val, test = curve.trained_to_end("tuned_val_f1", DEMO_PATIENCE)
            if test > best["test_f1"]:
                best = {
                    "test_f1": test,
                    "rule": _describe_rule("tuned"),
                    "best_epoch": epoch,
                    "config": source.configs.knobs[c],
                    "val_f1": val,
                    "runs": 1,
                }
    return best


def _per_run(bank: CurveBank, run: int, rule: int, objective: str = "val_f1"):
    return _curve(
        bank.val_f1[run],
        bank.test_f1[run],
        bank.tuned_rule[run],
        bank.val_pr_auc[run],
        bank.epoch_seconds[run],
        rule,
        run,
    ).trained_to_end(objective, DEMO_PATIENCE)


def noise(bank: CurveBank, source: CurveSource) -> dict:
    """Spread between training seeds of one configuration (pooled over the repeated ones):
    best-epoch validation F1 and `genretune train`'s test F1, at threshold 0.5."""
    val_var, test_var, n = [], [], 0
    for runs in source.configs.runs:
        if len(runs) < 2:
            continue
        outcomes = [_per_run(bank, int(r), BASELINE_RULE) for r in runs]
        val_var.append(np.var([bank.val_f1[r][:, BASELINE_RULE].max() for r in runs], ddof=1))
        test_var.append(np.var([o[2] for o in outcomes], ddof=1))
        n += 1
    return {
        "noise_sd": float(np.sqrt(np.mean(val_var))) if val_var else None,
        "noise_sd_test": float(np.sqrt(np.mean(test_var))) if test_var else None,
        "repeated_configs": n,
    }


def baseline_runs_trained(bank: CurveBank) -> list:
    """(best epoch, val F1, test F1) of `genretune train` on each recorded run of the
    baseline (at its fixed rule, threshold 0.5)."""
    return [_per_run(bank, int(r), rule_index(0.5, None)) for r in bank.baseline_runs()]


def baseline_and_oracle(bank: CurveBank, source: CurveSource) -> tuple[float, float]:
    """The baseline's mean test F1 over its recorded runs and the bank's oracle test F1."""
    base = baseline_runs_trained(bank)
    return float(np.mean([b[2] for b in base])), oracle(bank, source)["test_f1"]


def bank_summary(bank: CurveBank, source: CurveSource) -> dict:
    base_runs = bank.baseline_runs()
    base = baseline_runs_trained(bank)
    model = source.surrogate
    accuracy = check(source.configs, model, noise_floor_mae(bank, source.configs))
    best = oracle(bank, source)
    return {
        "oracle_test_f1": best["test_f1"],
        "oracle": best,
        "baseline_test_f1": float(np.mean([b[2] for b in base])),
        "baseline": {
            "config": bank.knob_dict(int(base_runs[0])),
            "test_f1_per_seed": [b[2] for b in base],
            "best_epoch_per_seed": [b[0] for b in base],
        },
        **noise(bank, source),
        "surrogate": {
            "model": f"{model.k}-nearest neighbours, inverse distance^{model.power:g}",
            "weights": dict(zip(source.features.names, model.weights.tolist(), strict=True)),
            "spearman": accuracy.spearman,
            "mae": accuracy.mae,
            "mae_all_rules": accuracy.mae_all_rules,
            "noise_floor_mae": accuracy.noise_floor_mae,
            "folds": accuracy.folds,
        },
        "bank": {
            "runs": bank.n_runs,
            "configs": len(source.configs.runs),
            "epochs": bank.epochs,
            "rules": len(RULES),
            "provenance": bank.provenance,
        },
    }


REAL_METHODS = {
    "random-fifo": "random-fifo",
    "random-asha": "random-asha",
    "default": "default",
    "no-late-cut": "no-late-cut",  # the default before the late cut (Ray's ASHA)
    "b_random_no_stop": "random-fifo",
    "c_random_asha": "random-asha",
    "previous-default": "previous-default",
    "d_tpe_asha": "previous-default",  # (d) was the default before the simulator chose
}


def validation_against_real(results: dict, files: list[Path], level: float = 0.9) -> list:
    """Each real search's best-so-far validation curve against the simulated `level` band of
    the same strategy and budget: the share of its trial-epochs inside the band."""
    rows = []
    for path in files:
        payload = json.loads(Path(path).read_text())
        budget = int(payload["summary"]["budget_epochs"])
        for run in payload["runs"]:
            for method, strategy in REAL_METHODS.items():
                real = run["methods"].get(method)
                if real is None or strategy not in results:
                    continue
                # One simulated curve per seed: from the smallest simulated budget that covers
                # the real one (a shorter budget's search is a prefix of a longer one's).
                sims = []
                for by_budget in results[strategy].values():
                    covering = [b for b in by_budget if isinstance(b, int) and b >= budget]
                    if covering:
                        sims.append(by_budget[min(covering)]["best"][:budget])
                if not sims:
                    continue
                low, high = band(np.stack(sims), level)
                # The real search may overshoot its budget by an epoch per running trial.
                best = np.maximum.accumulate([v for _, v in real["curve"]])[:budget]
                inside = (best >= low - 1e-9) & (best <= high + 1e-9)
                below = np.flatnonzero(best < low - 1e-9)
                above = np.flatnonzero(best > high + 1e-9)
                rows.append(
                    {
                        "file": Path(path).name,
                        "seed": run["seed"],
                        "strategy": strategy,
                        "budget": budget,
                        "inside": float(inside.mean()),
                        "below_at": (below + 1).tolist(),
                        "above_at": (above + 1).tolist(),
                        "real_final": float(best[-1]),
                        "band_final": [float(low[-1]), float(high[-1])],
                    }
                )
    return rows


RANK_EPOCHS = 6  # early-rank fidelity: trials that ran at least this many epochs
SURVIVOR_REPLAYS = 10  # replayed searches per real search, for the early-rank fidelity


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def _epoch_rank(curves: np.ndarray, k: int) -> float:
    """Spearman of (trials, epochs) curves' epoch-k values with their best."""
    return _spearman(curves[:, k - 1], curves.max(axis=1))


def early_rank_fidelity(real: np.ndarray, simulated: np.ndarray) -> dict:
    """How well a trial's value at epoch 1, 2, 3 ranks trials by their best over the first
    RANK_EPOCHS epochs (Spearman): what an early ASHA cut relies on. Both arrays are
    (trials, RANK_EPOCHS) curves of the trials that ran that long, `real` in real searches and
    `simulated` in replays of the same strategies and budgets: an early cut chose both sets
    on their early values the same way (the ranks of unselected curves are higher). The real
    values come with a bootstrap 95% CI over trials."""
    if len(real) < 5 or len(simulated) < 5:
        return {"trials": int(len(real)), "simulated_trials": int(len(simulated))}
    out: dict = {
        "trials": int(len(real)),
        "simulated_trials": int(len(simulated)),
        "epochs": RANK_EPOCHS,
    }
    rng = np.random.default_rng(0)
    resamples = rng.integers(len(real), size=(400, len(real)))
    for k in (1, 2, 3):
        boot = [_epoch_rank(real[i], k) for i in resamples]
        low, high = np.nanpercentile(boot, [2.5, 97.5])
        out[f"epoch{k}"] = {
            "real": _epoch_rank(real, k),
            "real_ci": [float(low), float(high)],
            "simulated": _epoch_rank(simulated, k),
        }
    return out


def trial_level_check(
    source, files: list[Path], draws: int = 50, good: float = 0.6, survivors=None
) -> dict:
    """Real trials against the simulator's curves for the same configuration: each real trial
    that recorded its per-epoch values (search_efficiency.py's trial_log), its best objective
    over the epochs it ran minus the mean of the simulator's over `draws` curves. A search is
    only as right as this is where it looks, so the trials whose simulated mean is at least
    `good` are also summarised alone.

    With `survivors(flags, budget, seeds) -> {objective: [curves]}` (the trials that ran
    RANK_EPOCHS epochs in replays of a strategy), the early-rank fidelity of every objective:
    the real searches' trials that ran that long against the replays' of the same strategies
    (their flags as the file records them) and budgets, SURVIVOR_REPLAYS per real seed."""
    rng = np.random.default_rng(0)
    diffs, sims = [], []
    # objective -> first RANK_EPOCHS values of trials that ran that long (real, simulated)
    early: dict[str, tuple[list, list]] = {}
    for path in files:
        payload = json.loads(Path(path).read_text())
        summary = payload.get("summary", {})
        budget = summary.get("budget_epochs")
        # Older files did not record their strategies' flags: no early ranks from them.
        flags_of = summary.get("strategy_flags", {}) if survivors and budget else {}
        for method, flags in flags_of.items():
            logged = [r for r in payload["runs"] if r["methods"].get(method, {}).get("trial_log")]
            replays = range(SURVIVOR_REPLAYS * len(logged))
            for key, curves in survivors(flags, budget, replays).items():
                early.setdefault(key, ([], []))[1].extend(curves)
        for run in payload["runs"]:
            for method, real in run["methods"].items():
                key = real.get("objective")
                for trial in real.get("trial_log", []):
                    values = trial.get(key)
                    if not values or any(v is None for v in trial["params"].values()):
                        continue
                    # A rule the search did not sample is the fixed one, threshold 0.5.
                    config = {"threshold": 0.5, "top_k": None, **trial["params"]}
                    n = len(values)
                    simulated = []
                    for _ in range(draws):
                        curve = source.curve(config, rng)
                        series = curve.tuned_val if key == "tuned_val_f1" else curve.own_val
                        simulated.append(float(np.max(series[:n])))
                    diffs.append(max(values) - float(np.mean(simulated)))
                    sims.append(float(np.mean(simulated)))
                    if n >= RANK_EPOCHS and method in flags_of:
                        early.setdefault(key, ([], []))[0].append(values[:RANK_EPOCHS])
    diffs, sims = np.array(diffs), np.array(sims)
    top = sims >= good
    return {
        "early_rank": {
            key: early_rank_fidelity(np.array(real), np.array(sim))
            for key, (real, sim) in sorted(early.items())
        },
        "trials": int(len(diffs)),
        "real_minus_simulated": median_ci(diffs),
        "mean_real_minus_simulated": float(diffs.mean()) if len(diffs) else None,
        "good_threshold": good,
        "good_trials": int(top.sum()),
        "good_real_minus_simulated": median_ci(diffs[top]),
        "good_mean_real_minus_simulated": float(diffs[top].mean()) if top.any() else None,
    }
