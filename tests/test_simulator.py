"""The search simulator (benchmarks/hposim): hand-made curve banks whose events can be worked
out by hand, replayed with the searcher, ASHA and stoppers `genretune search` builds."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from genretune.results.internals import OPTUNA_SEARCH_STUDY, optuna_search_part
from hposim.bank import DEFAULT_PATH, RULES, CurveBank, load_bank, rule_index
from hposim.curves import CurveSource
from hposim.measures import NEVER, final_best, first_reach
from hposim.replay import replay
from hposim.settings import bank_flags, demo_settings, fit_to_bank

REPO = Path(__file__).resolve().parents[1]
N_GENRES = 70


def hand_bank(curves: dict[float, list[float]], seconds: dict[float, list[float]] | None = None):
    """A bank of configurations that differ only in lr; each lr's validation F1 per epoch is
    the same under every rule, its test F1 0.01 lower, its epochs 1 s unless given."""
    settings = demo_settings()
    base = {**settings.baseline}
    names = ("min_samples_per_genre", "pos_weight_power", "pos_weight_cap", "base_channels", "lr")
    epochs = len(next(iter(curves.values())))
    val = np.array([[[v] * len(RULES) for v in curve] for curve in curves.values()])
    secs = np.array([(seconds or {}).get(lr, [1.0] * epochs) for lr in curves])
    counts = np.arange(N_GENRES) * 10 + 10
    return CurveBank(
        knob_names=names,
        knobs=np.array([[*(base[n] for n in names[:-1]), lr] for lr in curves], dtype=float),
        train_seed=np.zeros(len(curves), dtype=int),
        design=np.array(["sobol"] * len(curves)),
        val_f1=val,
        test_f1=val - 0.01,
        tuned_rule=np.zeros((len(curves), epochs), dtype=np.int16),
        val_pr_auc=val[:, :, 0],
        epoch_seconds=secs,
        train_loss=np.zeros((len(curves), epochs)),
        n_genres=np.full(len(curves), N_GENRES),
        genre_counts=counts,
        provenance={"base_config": {"epochs": epochs}},
    )


def fixed_order_algorithms(settings, points: list[dict]):
    """The algorithms `genretune search` builds, with Ray's OptunaSearch asked to evaluate
    `points` first, in order."""
    from ray.tune.search.optuna import OptunaSearch

    from genretune.search.algorithms import build_algorithms, build_sampler

    algorithms = build_algorithms(settings, storage=None)
    algorithms.searcher = OptunaSearch(
        space=settings.space,
        metric=settings.metric,
        mode=settings.mode,
        points_to_evaluate=points,
        sampler=build_sampler(settings),
    )
    return algorithms


def _replay(bank: CurveBank, flags: list[str], lrs: list[float], workers: int = 2):
    # Optuna searches the decision rule here: each trial reports its own rule's curve.
    flags = [*bank_flags(bank.provenance), "--decision", "space", *flags]
    settings = fit_to_bank(demo_settings(flags), bank.genre_counts)
    source = CurveSource(bank, settings.space, noise=False)
    points = [{**settings.baseline, "lr": lr} for lr in lrs]
    algorithms = fixed_order_algorithms(settings, points)
    log = replay(settings, source, workers, np.random.default_rng(0), algorithms=algorithms)
    return settings, log, algorithms


def test_asha_cuts_the_right_trial_at_its_rung_with_two_workers():
    # 4 epochs: ASHA's grace period is 2 (demo rule: min(patience, epochs // 2)), reduction
    # factor 3, so one rung at epoch 2; a trial continues when its best_val_f1 there is at
    # least the 66.7th percentile of the values recorded at the rung before it.
    bank = hand_bank(
        {
            1e-3: [0.1, 0.5, 0.6, 0.7],  # a: first at the rung: continues
            5e-4: [0.1, 0.3, 0.9, 0.9],  # b: 0.3 < a's 0.5 at the rung: cut there
            2e-4: [0.2, 0.6, 0.6, 0.6],  # c: starts when b is cut, 0.6 >= cut-off: continues
        },
        seconds={2e-4: [1.5, 1.5, 1.5, 1.5]},
    )
    settings, log, _ = _replay(bank, ["--num-samples", "3"], [1e-3, 5e-4, 2e-4])
    assert settings.grace_period == 2 and settings.reduction_factor == 3
    assert [t.config["lr"] for t in log.trials] == [1e-3, 5e-4, 2e-4]
    # Events by simulated time: a and b report at t=1 and t=2; b is cut at t=2, c starts then
    # and reports at t=3.5, 5, 6.5, 8; a ends at its 4th epoch (t=4).
    order = list(zip(log.times, log.trial_of, log.epoch_of, strict=True))
    assert order == [
        (1.0, 0, 1), (1.0, 1, 1), (2.0, 0, 2), (2.0, 1, 2),
        (3.0, 0, 3), (3.5, 2, 1), (4.0, 0, 4), (5.0, 2, 2), (6.5, 2, 3), (8.0, 2, 4),
    ]  # fmt: skip
    assert log.decisions == [("00001", 2, "asha"), ("00000", 4, "max_epochs"),
                             ("00002", 4, "max_epochs")]  # fmt: skip
    assert [t.end_reason for t in log.trials] == ["max_epochs", "asha", "max_epochs"]


@pytest.mark.parametrize(
    ("late_cut", "b_first", "a_epochs"),
    [(False, 0.30, 9), (True, 0.05, 4), (True, 0.30, 2)],
    ids=["ray-asha", "late-cut-ranked-on-arrival", "late-cut-below-a-lower-bound"],
)
def test_a_trial_that_reached_its_rungs_alone_is_ranked_later_with_late_cut(
    late_cut, b_first, a_epochs
):
    """Rungs at epochs 2 and 6. Trial a (0.6 s epochs) is faster than b (1 s), poor, and creeps
    up (so patience never stops it): it reaches both rungs first, where Ray's ASHA has nothing
    to compare it with, and runs all 9 epochs. With --late-cut it is compared at its first
    result after b reaches epoch 2 (t=2.4: 0.12 there against b's 0.5) and stopped at epoch 4;
    and if b's first epoch (t=1) is already above a's 0.12, b's best_val_f1 can only be higher
    at epoch 2, so a is stopped as it reaches the rung (t=1.2, epoch 2)."""
    bank = hand_bank(
        {
            1e-3: [0.10, 0.12, 0.14, 0.16, 0.18, 0.20, 0.22, 0.24, 0.26],  # a
            5e-4: [b_first, 0.50, 0.60, 0.70, 0.70, 0.70, 0.70, 0.70, 0.70],  # b
        },
        seconds={1e-3: [0.6] * 9},
    )
    flags = [
        "--num-samples",
        "2",
        "--grace-period",
        "2",
        "--late-cut" if late_cut else "--no-late-cut",
    ]
    settings, log, algorithms = _replay(bank, flags, [1e-3, 5e-4])
    assert settings.late_cut == late_cut and settings.metric == "best_val_f1"
    kind = "LateCutASHA" if late_cut else "AsyncHyperBandScheduler"  # ASHAScheduler's class
    assert type(algorithms.scheduler).__name__ == kind
    epochs = {t.config["lr"]: sum(1 for i in log.trial_of if i == int(t.trial_id))
              for t in log.trials}  # fmt: skip
    reasons = {t.config["lr"]: t.end_reason for t in log.trials}
    assert epochs == {1e-3: a_epochs, 5e-4: 9}
    assert reasons[1e-3] == ("asha" if late_cut else "max_epochs")
    assert reasons[5e-4] == "max_epochs"


def test_asha_cut_trial_reaches_optuna_with_its_last_value():
    bank = hand_bank({1e-3: [0.1, 0.5, 0.6, 0.7], 5e-4: [0.1, 0.3, 0.9, 0.9]})
    _, log, algorithms = _replay(bank, ["--num-samples", "2"], [1e-3, 5e-4])
    assert [t.end_reason for t in log.trials] == ["max_epochs", "asha"]
    # Ray's OptunaSearch tells Optuna a stopped trial's last reported value, as COMPLETE; the
    # result it was stopped on is not reported as an intermediate value.
    study = optuna_search_part(algorithms.searcher, OPTUNA_SEARCH_STUDY)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    assert [t.value for t in study.trials] == [0.7, 0.3]
    assert study.trials[1].intermediate_values == {1: 0.1}


def test_patience_stops_where_train_would():
    # Patience 2: `genretune train` stops after two epochs without a strict improvement.
    curve = [0.5, 0.6, 0.6, 0.55, 0.7, 0.7]
    bank = hand_bank({1e-3: curve})
    flags = ["--num-samples", "1", "--patience", "2", "--scheduler", "fifo"]
    settings, log, _ = _replay(bank, flags, [1e-3], workers=1)
    trial = log.trials[0]
    assert trial.end_reason == "patience"
    assert trial.last_result["epoch"] == 4 and log.epoch_of == [1, 2, 3, 4]
    assert [r for r in log.objective] == [0.5, 0.6, 0.6, 0.6]
    # The test F1 a retrain reports: the best epoch (2) under patience.
    assert trial.curve.trained_to_end("val_f1", 2) == (2, 0.6, pytest.approx(0.59))


def test_replaying_bank_configurations_returns_their_recorded_curves():
    rng = np.random.default_rng(3)
    curves = {lr: list(np.round(rng.uniform(0, 1, 5), 4)) for lr in (1e-3, 5e-4, 2e-4, 1e-4)}
    bank = hand_bank(curves)
    # Every rule scores differently: the trial's own rule must be the one replayed.
    bank.val_f1[:] += np.linspace(0, 0.01, len(RULES))[None, None, :]
    order = [2e-4, 1e-3, 1e-4, 5e-4]
    flags = ["--num-samples", "4", "--scheduler", "fifo", "--patience", "5"]
    settings, log, _ = _replay(bank, flags, order)
    own = rule_index(settings.baseline["threshold"], settings.baseline["top_k"])
    for trial in log.trials:
        run = int(bank.runs_of({**trial.config})[0])
        mine = np.flatnonzero(np.array(log.trial_of) == int(trial.trial_id))
        reported = [log.objective[i] for i in mine]
        assert trial.curve.run == run
        np.testing.assert_array_equal(trial.curve.own_val, bank.val_f1[run][:, own])
        assert reported == list(np.maximum.accumulate(bank.val_f1[run][:, own]))
    assert [t.config["lr"] for t in log.trials] == order


def test_surrogate_neither_repeats_a_lucky_run_nor_counts_noise_twice():
    """A configuration recorded once is its true curve plus one run's noise. The surrogate's
    mean keeps only the part of a configuration's deviation from its neighbours that is not
    noise (more of it when recorded three times), and adds fresh noise for the rest: so next to
    the bank's luckiest run a search meets that luck only in part, and held out, the
    configurations the surrogate ranks best score, with noise, what their runs scored."""
    from hposim.curves import tuned_rules
    from hposim.fitting import load_or_fit_surrogate

    bank = load_bank()
    space = fit_to_bank(demo_settings(bank_flags(bank.provenance)), bank.genre_counts).space
    source = CurveSource(bank, space)
    source.surrogate = load_or_fit_surrogate(source, DEFAULT_PATH)
    configs, kept = source.configs, source.means.kept
    n_runs = np.array([len(r) for r in configs.runs])
    assert 0 < kept[n_runs == 1].max() < kept[n_runs == 3].min() < 1

    rng = np.random.default_rng(0)
    epochs = np.arange(bank.epochs)

    def simulated_best(x, held_out=None, draws=20):
        mean = source.predict(x, held_out)[0]
        scale = np.sqrt(1 - source.noise_carried(x, held_out))
        out = []
        for _ in range(draws):
            residual = source.residuals[int(rng.integers(len(source.residuals)))][0]
            val = np.clip(mean + scale * residual, 0, 1)
            out.append(val[epochs, tuned_rules(val)].max())
        return np.array(out)

    real = np.array(
        [np.mean([bank.val_f1[r][epochs, bank.tuned_rule[r]].max() for r in runs])
         for runs in configs.runs]
    )  # fmt: skip
    luckiest = int(np.argmax(np.where(n_runs == 1, real, -1)))
    assert simulated_best(configs.x[luckiest], draws=200).mean() < real[luckiest]

    simulated = np.array(
        [simulated_best(configs.x[c], np.arange(len(real)) == c).mean() for c in range(len(real))]
    )
    top = np.argsort(simulated)[-30:]
    assert abs(simulated[top].mean() - real[top].mean()) < 0.005


def test_noise_by_quality_and_seed_shrinks_with_quality_and_is_shared_within_a_search():
    """`--noise-model by-quality-and-seed`: a good configuration's surrogate curve is less noisy
    than a poor one's (as the bank's repeated runs are), and every trial of one search (one
    training seed) draws the noise of one bank training seed, while the pooled model mixes
    them."""
    from hposim.fitting import load_or_fit_surrogate

    bank = load_bank()
    space = fit_to_bank(demo_settings(bank_flags(bank.provenance)), bank.genre_counts).space
    sources = {}
    for model in ("pooled", "by-quality-and-seed"):
        sources[model] = CurveSource(bank, space, noise_model=model)
        sources[model].surrogate = load_or_fit_surrogate(sources[model], DEFAULT_PATH)
    source = sources["by-quality-and-seed"]
    assert source.noise_scale(0.65) < 1 < source.noise_scale(0.35)
    # The bank itself: the spread of repeated runs falls with their configuration's quality.
    good = source.quality >= np.median(source.quality)
    assert source.quality_sd[good].mean() < source.quality_sd[~good].mean()

    rng = np.random.default_rng(1)
    base = {**demo_settings().baseline, "threshold": 0.5, "top_k": None}
    configs = [{**base, "lr": float(lr)} for lr in np.geomspace(2e-4, 3e-3, 12)]
    assert all(len(bank.runs_of({k: c[k] for k in bank.knob_names})) == 0 for c in configs)

    rule = rule_index(0.5, None)

    def residual_seeds(model: str, search_seed: int) -> set[int]:
        """The bank training seeds of the residuals in one search's surrogate curves: each
        curve minus the surrogate's mean is one residual, scaled."""
        src, seen = sources[model], set()
        for config in configs:
            config = {**config, "seed": search_seed}
            mean = src.predict(src.features({k: config[k] for k in bank.knob_names}))[0]
            noise = src.curve(config, rng).own_val - mean[:, rule]
            for i, (dv, _, _) in enumerate(src.residuals):
                scale = noise @ dv[:, rule] / (dv[:, rule] @ dv[:, rule])
                if scale > 0 and np.allclose(noise, scale * dv[:, rule], atol=1e-9):
                    seen.add(int(src.residual_seed[i]))
        return seen

    seeds = np.unique(source.residual_seed)
    assert residual_seeds("by-quality-and-seed", 4) == {int(seeds[4 % len(seeds)])}
    assert len(residual_seeds("pooled", 4)) > 1


def test_budget_ends_the_search_after_that_many_trial_epochs():
    bank = hand_bank({1e-3: [0.1, 0.2, 0.3, 0.4], 5e-4: [0.2, 0.3, 0.4, 0.5]})
    flags = ["--num-samples", "10", "--budget-epochs", "5", "--scheduler", "fifo"]
    _, log, _ = _replay(bank, flags, [1e-3, 5e-4])
    assert log.n_results == 5
    assert all(t.status == "TERMINATED" for t in log.trials)


@pytest.mark.slow
@pytest.mark.benchmark_smoke
def test_simulate_quick_runs_on_the_committed_bank(tmp_path):
    committed = (REPO / "benchmarks" / "results" / "simulate.json").stat().st_mtime_ns
    res = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "simulate.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    # A smoke run writes into a temporary directory, never over the committed results.
    assert (REPO / "benchmarks" / "results" / "simulate.json").stat().st_mtime_ns == committed
    wrote = re.search(r"wrote (\S+simulate\.json)", res.stderr)
    assert wrote, res.stderr[-2000:]
    out = Path(wrote.group(1))
    assert out.parent != REPO / "benchmarks" / "results"
    payload = json.loads(out.read_text())
    for key in ("oracle_test_f1", "baseline_test_f1", "noise_sd", "surrogate", "strategies"):
        assert key in payload
    assert set(payload["surrogate"]) >= {"spearman", "mae"}
    assert payload["baseline_test_f1"] < payload["oracle_test_f1"] <= 1
    for name in ("random-fifo", "random-asha", "default"):
        for budget in ("30", "60"):
            stats = payload["strategies"][name][budget]
            for key in (
                "fraction_to_random_final",
                "fraction_to_random_final_tuned_rule",
                "test_f1",
                "regret",
            ):
                assert set(stats[key]) == {"median", "ci_low", "ci_high"}
            assert 0 < stats["test_f1"]["median"] <= 1
    # random-fifo reaches its own final best within its budget, in every seed.
    assert payload["strategies"]["random-fifo"]["60"]["reached_random_final"] == 1.0
    assert (
        payload["strategies"]["random-asha"]["60"]["paired_test_f1_diff_vs_random_asha"]["median"]
        == 0
    )
    assert out.with_suffix(".png").stat().st_size > 0
    assert "| default |" in out.with_suffix(".md").read_text()
    bank = load_bank()
    assert bank.n_runs >= 200 + 1 + 20 + 60


@pytest.mark.slow
@pytest.mark.benchmark_smoke
def test_curve_bank_recording_resumes_after_a_kill(tmp_path, isolated_cache):
    """A tiny bank: the recording is killed once a run is written, then continues without
    training that run again; every epoch the recorder checks its F1 against the trial's."""
    import os
    import signal
    import time

    out = tmp_path / "bank.npz"
    argv = [sys.executable, str(REPO / "benchmarks" / "curve_bank.py"), "--out", str(out)]
    argv += ["--sobol", "2", "--near", "1", "--repeat", "1", "--epochs", "2", "--workers", "1"]
    argv += ["--synthetic-scale", "0.03"]
    env = {**os.environ, "GENRETUNE_CACHE_DIR": str(isolated_cache)}
    parts = tmp_path / "bank.npz.parts"
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while not list(parts.glob("run_*.npz")):
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert not out.exists()
    # A kill in the middle of writing the wall-time file once left it empty (the file is now
    # replaced atomically; an unreadable one only loses that bookkeeping).
    (parts / "wall.json").write_text("")
    res = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    # The run written before the kill is kept, not trained again.
    recorded = re.search(r"6 runs \((\d+) recorded already\)", res.stdout)
    assert recorded and int(recorded.group(1)) >= 1, res.stdout
    assert not parts.exists(), "parts are removed once the bank is assembled"
    bank = load_bank(out)
    # The baseline, 2 Sobol points, 1 near the baseline, the baseline repeated with seeds 1, 2.
    assert bank.n_runs == 6 and bank.epochs == 2
    assert list(bank.design) == ["baseline", "sobol", "sobol", "near", "baseline", "baseline"]
    assert list(bank.train_seed) == [0, 0, 0, 0, 1, 2]
    assert bank.val_f1.shape == (6, 2, len(RULES)) and np.isfinite(bank.val_f1).all()
    assert (bank.epoch_seconds > 0).all()
    assert bank.provenance["code_commit"] and bank.provenance["wall_seconds"] > 0


def test_validation_compares_real_trials_and_their_early_ranks_with_the_simulator(tmp_path):
    """Real trials whose recorded values are the bank's own curves agree with the simulator
    (noise off) to the last digit. Early ranks: the real trials that ran RANK_EPOCHS epochs
    against the survivors of replays of the file's strategies at its budget, 10 per seed."""
    from hposim.evaluation import RANK_EPOCHS, SURVIVOR_REPLAYS, trial_level_check

    finals = [0.30, 0.40, 0.50, 0.60, 0.70, 0.80]
    firsts = [0.25, 0.10, 0.35, 0.20, 0.45, 0.30]  # epoch 1 ranks the trials differently
    curves = {
        1e-4 * (k + 1): [f, *np.linspace(f + 0.01, v, 5).round(4).tolist()]
        for k, (f, v) in enumerate(zip(firsts, finals, strict=True))
    }
    bank = hand_bank(curves)
    settings = fit_to_bank(demo_settings([*bank_flags(bank.provenance)]), bank.genre_counts)
    source = CurveSource(bank, settings.space, noise=False)
    asked = []

    def survivors(flags, budget, seeds):  # the replays' survivors: the bank's curves
        asked.append((flags, budget, seeds))
        return {"tuned_val_f1": [np.array(c) for c in curves.values()]} if seeds else {}

    def write(values_of, summary=True):
        trials = [
            {
                "trial_id": str(k),
                "params": {**{n: settings.baseline[n] for n in settings.space}, "lr": lr},
                "tuned_val_f1": values_of(curve),
            }
            for k, (lr, curve) in enumerate(curves.items())
        ]
        cut = {**trials[0], "trial_id": "cut", "tuned_val_f1": [0.9, 0.1]}  # ran 2 epochs
        path = tmp_path / "real.json"
        method = {"objective": "tuned_val_f1", "trial_log": [*trials, cut]}
        flags = {"budget_epochs": 150, "strategy_flags": {"default": "", "unrun": "--x"}}
        runs = [{"seed": 0, "methods": {"default": method}}]
        path.write_text(json.dumps({"runs": runs, **({"summary": flags} if summary else {})}))
        return trial_level_check(source, [path], draws=3, survivors=survivors)

    same = write(list)
    assert same["trials"] == 7 and same["real_minus_simulated"]["median"] == pytest.approx(0)
    # Each strategy the file ran replayed at its budget, 10 replays per seed it logged.
    assert asked == [("", 150, range(SURVIVOR_REPLAYS)), ("--x", 150, range(0))]
    early = same["early_rank"]["tuned_val_f1"]
    assert (early["trials"], early["simulated_trials"], early["epochs"]) == (6, 6, RANK_EPOCHS)
    for k in (1, 2, 3):
        assert early[f"epoch{k}"]["real"] == pytest.approx(early[f"epoch{k}"]["simulated"])
        low, high = early[f"epoch{k}"]["real_ci"]
        assert low <= early[f"epoch{k}"]["real"] <= high
    assert early["epoch1"]["real"] < early["epoch3"]["real"] < 1.0
    # The first epoch in the order of the trials' best: the real rank is perfect, the
    # simulator's is not.
    sorted_first = write(lambda c: [c[-1] - 0.3, *c[1:]])["early_rank"]["tuned_val_f1"]
    assert sorted_first["epoch1"]["real"] == pytest.approx(1.0)
    assert sorted_first["epoch1"]["simulated"] == pytest.approx(early["epoch1"]["simulated"])
    # A file that does not say how its searches ran: no early ranks from it.
    assert write(list, summary=False)["early_rank"] == {}


def test_survivors_are_the_replayed_trials_that_ran_six_epochs():
    """Two workers, every trial runs every epoch, epochs of a second each: after 11
    trial-epochs one trial has run 6 epochs; after 12, two; after 20, still two (the next two
    ran 2 each), whose first 6 values come back, under the search's objective."""
    import simulate

    curves = {1e-4 * (k + 1): list(np.linspace(0.1, 0.2 + 0.1 * k, 8)) for k in range(4)}
    bank = hand_bank(curves)
    space = fit_to_bank(demo_settings(bank_flags(bank.provenance)), bank.genre_counts).space
    simulate._STATE.update(bank=bank, source=CurveSource(bank, space, noise=False))
    fifo = "--scheduler fifo --patience {epochs} --sampler random --no-baseline"
    for budget, expected in ((11, 1), (12, 2), (20, 2)):
        got = simulate.simulated_survivors(fifo, budget, range(1))
        assert list(got) == ["tuned_val_f1"] and len(got["tuned_val_f1"]) == expected, budget
        assert all(c.shape == (6,) for c in got["tuned_val_f1"])
    own_rule = simulate.simulated_survivors(fifo + " --decision space", 20, range(3))
    assert list(own_rule) == ["val_f1"] and len(own_rule["val_f1"]) == 6
    # ASHA cuts at epoch 1 and 2: fewer trials get to 6 epochs on the same budget.
    asha = simulate.simulated_survivors("--grace-period 1 --no-late-cut", 20, range(3))
    assert sum(map(len, asha.values())) < 6


def test_summary_gives_the_budget_and_the_wall_time_to_random_fifos_final_best():
    from hposim.summary import summarise

    def run(best, seconds):
        best = np.array(best)
        return {
            4: {"best": best, "chosen_test": best - 0.1, "trials": 2, "seconds": np.array(seconds)}
        }

    results = {
        "random-fifo": {0: run([0.2, 0.3, 0.5, 0.6], [1, 2, 3, 10])},
        "random-asha": {0: run([0.2, 0.3, 0.5, 0.5], [1, 2, 3, 4])},
        # Reaches 0.6 at its 2nd result (half the budget), 4 s into random-fifo's 10 s.
        "ramped": {0: run([0.4, 0.6, 0.7, 0.7], [2, 4, 6, 8])},
    }
    summary = summarise(results, [4], oracle_test_f1=0.9)
    ramped = summary["ramped"]["4"]
    assert ramped["fraction_to_random_final"]["median"] == 0.5
    assert ramped["wall_to_random_final"]["median"] == 0.4
    assert ramped["wall_seconds"]["median"] == 8
    assert summary["random-asha"]["4"]["wall_to_random_final"]["median"] is None  # never
    assert summary["random-fifo"]["4"]["wall_to_random_final"]["median"] == 1.0
    # On one validation measure (the tuned rule) random-fifo's trials did better than at the
    # rules it searched (0.7 against 0.6): the same search reaches that at its 3rd result.
    results["random-fifo"][0][4]["best_tuned"] = np.array([0.25, 0.35, 0.55, 0.7])
    results["ramped"][0][4]["best_tuned"] = np.array([0.4, 0.6, 0.7, 0.7])
    both = summarise(results, [4], oracle_test_f1=0.9)["ramped"]["4"]
    assert both["fraction_to_random_final"]["median"] == 0.5
    assert both["fraction_to_random_final_tuned_rule"]["median"] == 0.75
    assert both["per_seed"]["fraction_to_random_final_tuned_rule"] == [0.75]
    # Its pick after a third of the budget (result 1: 0.3 test F1) against random-fifo's at
    # its end (0.5).
    third = both["paired_test_f1_at_third_vs_random_fifo_final"]["median"]
    assert third == pytest.approx(-0.2)


def _real_method(test_f1: float, fraction: float) -> dict:
    points = {str(f): {"best": test_f1 + 0.05, "test_f1": test_f1} for f in (0.25, 0.5, 1.0)}
    return {"trials": 3, "fraction_to_random_final": fraction, "points": points}


def test_real_benchmark_tables_take_methods_run_on_fewer_seeds():
    """search_efficiency.py --methods: a method run on some seeds only is summarised over
    those, paired with random-asha seed by seed."""
    import search_efficiency as se

    from hposim.real_report import summarise as summarise_real

    runs = [
        {
            "seed": s,
            "methods": {
                "random-fifo": _real_method(0.60, 0.9),
                "random-asha": _real_method(0.61 + 0.01 * s, 0.8),
                "default": _real_method(0.65 + 0.02 * s, 0.3),
                se.BASELINE: {"test_f1": 0.58},
            },
        }
        for s in range(4)
    ]
    runs[0]["methods"]["g1"] = _real_method(0.70, 0.2)
    runs[2]["methods"]["g1"] = _real_method(0.60, float("inf"))
    summary = summarise_real(runs, ["random-fifo", "random-asha", "default", "g1"], 150)
    table = summary["table"]
    assert table["g1"]["seeds"] == [0, 2] and table["default"]["seeds"] == [0, 1, 2, 3]
    assert table["g1"]["paired_test_f1_diff_vs_random_asha"] == pytest.approx([0.09, -0.03])
    assert table["default"]["paired_test_f1_diff_vs_random_asha"] == pytest.approx(
        [0.04, 0.05, 0.06, 0.07]
    )
    from hposim.real_report import print_tables

    text = print_tables(summary)
    g1 = next(line for line in text.splitlines() if line.startswith("| g1 |"))
    assert g1.startswith("| g1 | 2 | 3 |") and "(0.200, never)" in g1
    default = next(line for line in text.splitlines() if line.startswith("| default |"))
    assert "0.055 [" in default  # the median paired difference, with its CI


def test_real_benchmark_refuses_unknown_methods_and_runs_with_nothing_to_do(tmp_path):
    from hposim.strategies import STRATEGIES

    script = REPO / "benchmarks" / "search_efficiency.py"
    earlier = tmp_path / "earlier.json"
    methods = {m: _real_method(0.6, 0.5) for m in STRATEGIES}
    saved = {
        "summary": {"budget_epochs": 150, "strategy_flags": dict(STRATEGIES)},
        "runs": [{"seed": 0, "methods": methods}],
    }
    earlier.write_text(json.dumps(saved))
    before = earlier.read_bytes()
    out = tmp_path / "out"
    for flags, message in (
        (["--methods", "nope"], "--methods: unknown ['nope']"),
        (["--methods", "default", "--add-to", str(earlier)], "nothing to run"),
    ):
        res = subprocess.run(
            [sys.executable, str(script), "--seeds", "1", "--out", str(out), *flags],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert res.returncode == 2 and message in res.stderr, res.stderr
        assert "Traceback" not in res.stderr
    assert earlier.read_bytes() == before and not out.exists()


def test_real_benchmark_measures_every_search_at_the_tuned_rule_where_recorded():
    from hposim.real_report import tuned_rule_fraction

    run = {
        "methods": {
            "random-fifo": {"objective": "val_f1", "curve_tuned_rule": [0.5, 0.7, 0.6]},
            "default": {"objective": "tuned_val_f1", "curve": [(1, 0.6), (2, 0.72)]},
            "old-asha": {"objective": "val_f1", "curve": [(1, 0.8)]},
            "asha": {"objective": "val_f1", "curve": [(1, 0.1)], "curve_tuned_rule": [0.6, 0.7]},
        }
    }
    assert tuned_rule_fraction(run, "default", 4) == 0.5
    assert tuned_rule_fraction(run, "asha", 4) == 0.5  # reaches 0.7 at its 2nd result
    assert tuned_rule_fraction(run, "old-asha", 4) is None  # its tuned-rule order is unknown
    # An older run kept random-fifo's values per trial only: its best is all that is needed.
    fifo = {"objective": "val_f1", "trial_log": [{"tuned_val_f1": [0.5, 0.73]}]}
    older = {"methods": {**run["methods"], "random-fifo": fifo}}
    assert tuned_rule_fraction(older, "default", 4) == float("inf")


def test_all_knowing_search_runs_the_configurations_best_first_at_each_depth():
    from genretune.search.algorithms import build_algorithms
    from hposim.all_knowing import FLAGS, KnownOrderSearcher, rankings

    late, early, middling = 1e-3, 5e-4, 2e-4
    bank = hand_bank({late: [0.1, 0.2, 0.9], early: [0.5, 0.5, 0.6], middling: [0.3, 0.4, 0.4]})
    settings = fit_to_bank(demo_settings([*bank_flags(bank.provenance), *FLAGS]), bank.genre_counts)
    source = CurveSource(bank, settings.space, noise=False)
    lr_of = lambda order: [source.configs.knobs[i]["lr"] for i in order]  # noqa: E731
    ranked = rankings(source.configs)
    assert lr_of(ranked["best of epochs 1-1"]) == [early, middling, late]
    assert lr_of(ranked["best of epochs 1-all"]) == [late, early, middling]
    # Ranked on other curves (the expected ones, for the bound without luck), their order:
    # here each configuration given the curves of the one opposite it in the bank.
    n = len(source.configs.knobs)
    swapped = rankings(source.configs, source.configs.val[::-1])
    for name, order in ranked.items():
        assert swapped[name] == [n - 1 - i for i in order]

    algorithms = build_algorithms(settings, storage=None)
    order = ranked["best of epochs 1-all"]
    algorithms.searcher = KnownOrderSearcher(
        [source.configs.knobs[i] for i in order], settings.metric
    )
    log = replay(settings, source, 2, np.random.default_rng(0), algorithms=algorithms)
    assert [t.config["lr"] for t in log.trials][:3] == [late, early, middling]
    # Two workers: the late bloomer's epoch 3 (0.9) is the search's best, reached at the
    # fifth result (both first trials' epochs 1 and 2, then its epoch 3).
    best = np.maximum.accumulate(log.objective)
    assert best[-1] == pytest.approx(0.9)
    assert first_reach(best, 0.9, len(best)) * len(best) == pytest.approx(5)


def test_first_wave_comes_from_the_search_and_the_rest_from_the_known_order():
    from hposim.all_knowing import FirstWaveThenKnowing, KnownOrderSearcher

    a, b, c, d = 1e-3, 5e-4, 2e-4, 1e-4
    bank = hand_bank({a: [0.1, 0.2, 0.3], b: [0.2, 0.3, 0.4], c: [0.6, 0.7, 0.8], d: [0.5] * 3})
    flags = [*bank_flags(bank.provenance), "--num-samples", "4", "--scheduler", "fifo"]
    settings = fit_to_bank(demo_settings(flags), bank.genre_counts)
    source = CurveSource(bank, settings.space, noise=False)
    algorithms = fixed_order_algorithms(
        settings, [{**settings.baseline, "lr": lr} for lr in (a, b)]
    )
    first = algorithms.searcher
    known = KnownOrderSearcher([{**settings.baseline, "lr": lr} for lr in (c, d)], settings.metric)
    algorithms.searcher = FirstWaveThenKnowing(first, known, 2, settings.metric)
    log = replay(settings, source, 2, np.random.default_rng(0), algorithms=algorithms)
    assert [t.config["lr"] for t in log.trials] == [a, b, c, d]
    # The first searcher's study holds its own two trials, ended with their last values,
    # and nothing of the known order's.
    study = optuna_search_part(first, OPTUNA_SEARCH_STUDY)
    assert [t.params["lr"] for t in study.trials] == [a, b]
    assert [t.value for t in study.trials] == pytest.approx([0.3, 0.4])


@pytest.mark.slow
@pytest.mark.benchmark_smoke
def test_all_knowing_benchmark_bounds_the_default_on_the_committed_bank(tmp_path):
    out = tmp_path / "ak.json"
    res = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "all_knowing.py"), "--workers", "2,8",
         "--seeds", "3", "--budget-epochs", "30,60", "--json", str(out)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    summary = json.loads(out.read_text())["summary"]
    assert set(summary) == {"2", "8"} and set(summary["2"]) == {"30", "60"}
    payload = json.loads(out.read_text())
    baseline, oracle = (payload["settings"][k] for k in ("baseline_test_f1", "oracle_test_f1"))
    assert 0 < baseline < oracle < 1
    for by_budget in summary.values():
        for by_measure in by_budget.values():
            # The pick's test F1: every search's median is a test F1 of the bank's range.
            picks = by_measure.pop("test F1 of the pick")
            bounds = ("all-knowing", "first wave, then all-knowing",
                      "first wave, then knowing expected curves")  # fmt: skip
            assert set(picks) == {"default", *bounds}
            assert all(0 < p["ci_low"] <= p["median"] <= p["ci_high"] < 1 for p in picks.values())
            # Each bound's pick under each fixed ranking: never better than its per-seed best.
            by_ranking = by_measure.pop("test F1 of the pick, by ranking")
            assert set(by_ranking) == set(bounds)
            for bound, singles in by_ranking.items():
                assert max(v["median"] for v in singles.values()) <= picks[bound]["median"] + 1e-12
            for entry in by_measure.values():
                assert entry["seeds"] == 3
                for bound in bounds:
                    known = entry[bound]["median"]
                    # Each seed's best ranking is never later than any single ranking.
                    singles = [v for v in entry["rankings"][bound].values() if v is not None]
                    assert known is not None and known <= min(singles) + 1e-12
    assert out.with_suffix(".png").stat().st_size > 0
    md = out.with_suffix(".md").read_text()
    assert "| 8 | 60 |" in md and f"baseline's test F1 ({baseline:.3f})" in md


def test_simulate_refuses_bad_strategies_before_any_replay(tmp_path, capsys):
    """A strategy's flags are parsed before the pool starts (an error in a pool process would
    stall the run)."""
    import simulate

    for argv, said in (
        (["--strategy", "x=--nonsense"], "--strategy x: unrecognized arguments: --nonsense"),
        (["--strategy", 'x=--grace-period "1'], "--strategy x: No closing quotation"),
        (["--strategies", "nope"], "--strategies: unknown nope"),
        (["--validate", str(tmp_path / "nope.json")], "--validate"),
    ):
        with pytest.raises(SystemExit) as stopped:
            simulate.main(["--quick", *argv])  # refused before anything starts
        err = capsys.readouterr().err
        assert stopped.value.code == 2 and said in err.strip().splitlines()[-1], err


def test_first_reach_counts_results_within_the_budget_only():
    """One measure for the simulated and the real benchmark (hposim/measures.py)."""
    values = [0.1, 0.5, 0.5, float("nan"), 0.9, 0.95]
    assert first_reach(values, 0.5, 4) == pytest.approx(2 / 4)  # a tie counts
    assert first_reach(values, 0.9, 6) == pytest.approx(5 / 6)
    assert first_reach(values, 0.9, 4) == NEVER  # reached only past the budget
    assert first_reach(values, 0.96, 6) == NEVER
    assert first_reach([float("nan")] * 3, 0.0, 3) == NEVER  # a NaN never reaches
    assert final_best(values, 3) == 0.5 and final_best(values, 6) == 0.95


def test_every_named_strategy_is_a_valid_search(tmp_path):
    """The strategies defined once for both benchmarks all parse as `genretune search` flags
    (placeholders filled as the benchmarks fill them)."""
    import shlex

    from hposim.strategies import NAMED

    baseline = tmp_path / "worst.json"
    baseline.write_text(json.dumps({"lr": 0.0001, "base_channels": 8}))
    for name, flags in NAMED.items():
        filled = flags.replace("{epochs}", "15").replace("{worst_baseline}", str(baseline))
        settings = demo_settings(shlex.split(filled))
        assert settings.profile == "demo", name


# --- the field's baselines (hposim/baselines.py) through the replay -------------------------


def _lrs(n: int) -> list[float]:
    return [round(1e-4 * (i + 1), 6) for i in range(n)]


def test_one_epoch_top_k_screens_every_configuration_one_epoch_and_trains_the_best_k():
    from hposim.baselines import one_epoch_top_k_scheduler

    lrs = _lrs(6)
    # The epoch-1 values rank the configurations 5, 2, 4, ...: the two best train on.
    first = [0.10, 0.30, 0.50, 0.20, 0.40, 0.60]
    bank = hand_bank(
        {lr: [f, f + 0.01, f + 0.02, f + 0.03] for lr, f in zip(lrs, first, strict=True)}
    )
    flags = ["--num-samples", "6", "--scheduler", "fifo", "--patience", "4"]
    flags = [*bank_flags(bank.provenance), "--decision", "space", *flags]
    settings = fit_to_bank(demo_settings(flags), bank.genre_counts)
    algorithms = fixed_order_algorithms(settings, [{**settings.baseline, "lr": lr} for lr in lrs])
    algorithms.scheduler = one_epoch_top_k_scheduler(screen=6, keep=2)
    algorithms.pauses_trials = True
    source = CurveSource(bank, settings.space, noise=False)
    log = replay(settings, source, 2, np.random.default_rng(0), algorithms=algorithms)
    ran = np.bincount(np.array(log.trial_of), minlength=len(log.trials))
    lr_of = [t.config["lr"] for t in log.trials]
    assert len(log.trials) == 6
    assert {lr_of[i] for i in np.flatnonzero(ran == 4)} == {lrs[5], lrs[2]}
    assert sorted(ran) == [1, 1, 1, 1, 4, 4]
    assert all(t.status == "TERMINATED" for t in log.trials)
    # The screened-out ones were paused, then stopped by the scheduler (Ray's stop_trial).
    assert sum(reason == "halving" for _, _, reason in log.decisions) == 4


def test_hyperband_halves_its_brackets_and_only_the_best_reach_the_last_epoch():
    """Ray's HyperBandScheduler through the replay: trials pause at a rung (holding no
    worker), the bracket's best resume, the others are stopped."""
    from hposim.baselines import baseline_algorithms

    lrs = _lrs(12)
    bank = hand_bank({lr: [0.05 * i + 0.01 * e for e in range(9)] for i, lr in enumerate(lrs)})
    flags = [*bank_flags(bank.provenance), "--decision", "space", "--sampler", "random"]
    flags += ["--no-baseline", "--scheduler", "fifo", "--patience", "9", "--budget-epochs", "60"]
    settings = fit_to_bank(demo_settings(flags), bank.genre_counts)
    source = CurveSource(bank, settings.space, noise=False)
    algorithms = baseline_algorithms("hyperband", settings, workers=2, seed=0)
    log = replay(settings, source, 2, np.random.default_rng(0), algorithms=algorithms)
    assert log.n_results >= 60  # the budget ended it (an epoch over per running trial at most)
    assert any(reason == "halving" for _, _, reason in log.decisions)
    ran = np.bincount(np.array(log.trial_of), minlength=len(log.trials))
    assert len({int(r) for r in ran}) > 2  # several fidelities
    # A trial halved at a rung was beaten there by one that went on past it.
    by_id = {t.trial_id: t for t in log.trials}
    for trial_id, epoch, reason in log.decisions:
        if reason == "halving":
            value = by_id[trial_id].curve.own_val[epoch - 1]
            on = [t for t, n in zip(log.trials, ran, strict=True) if n > epoch]
            assert any(t.curve.own_val[epoch - 1] > value for t in on)


def test_bohb_proposes_values_of_the_space_and_runs_to_its_budget():
    import optuna.distributions as od

    from hposim.baselines import baseline_algorithms

    bank = load_bank(DEFAULT_PATH)
    flags = [*bank_flags(bank.provenance), "--decision", "space", "--no-baseline"]
    flags += ["--scheduler", "fifo", "--budget-epochs", "40"]
    settings = fit_to_bank(demo_settings(flags), bank.genre_counts)
    source = CurveSource(bank, settings.space, noise=False)
    algorithms = baseline_algorithms("bohb", settings, workers=2, seed=3)
    log = replay(settings, source, 2, np.random.default_rng(3), algorithms=algorithms)
    assert 40 <= log.n_results <= 42
    for trial in log.trials:
        for name, dist in settings.space.items():
            value = trial.config[name]
            if isinstance(dist, od.CategoricalDistribution):
                assert value in dist.choices
            else:
                assert dist.low <= value <= dist.high and type(value) is type(dist.low)


def test_a_compute_seconds_budget_counts_the_recorded_epoch_seconds():
    from hposim.baselines import ComputeBudgetStopper

    bank = hand_bank(
        {1e-3: [0.1, 0.2, 0.3, 0.4], 5e-4: [0.2, 0.3, 0.4, 0.5]},
        seconds={1e-3: [3.0] * 4, 5e-4: [1.0] * 4},
    )
    flags = ["--num-samples", "10", "--scheduler", "fifo", "--budget-epochs", "100"]
    flags = [*bank_flags(bank.provenance), "--decision", "space", *flags]
    settings = fit_to_bank(demo_settings(flags), bank.genre_counts)
    algorithms = fixed_order_algorithms(settings, [{**settings.baseline, "lr": 1e-3}] * 10)
    algorithms.stoppers = [ComputeBudgetStopper(10.0)]
    source = CurveSource(bank, settings.space, noise=False)
    log = replay(settings, source, 1, np.random.default_rng(0), algorithms=algorithms)
    # 3 s epochs: the fourth result spends 12 s >= 10, and ends the search.
    assert log.n_results == 4


def test_paired_differences_name_every_other_strategy_and_are_paired_by_seed():
    from hposim.summary import summarise

    def run(tests: list[float]) -> dict:
        return {
            seed: {
                5: {
                    "best": np.array([t]),
                    "best_tuned": np.array([t]),
                    "chosen_test": np.array([t]),
                    "seconds": np.array([1.0]),
                    "compute": np.array([1.0]),
                    "trials": 1,
                }
            }
            for seed, t in enumerate(tests)
        }

    results = {
        "random-fifo": run([0.5, 0.6, 0.7]),
        "random-asha": run([0.4, 0.6, 0.9]),
        "default": run([0.6, 0.6, 0.8]),
    }
    out = summarise(results, [5], oracle_test_f1=1.0)
    diff = out["default"]["5"]["paired_test_f1_diff_vs"]
    assert set(diff) == {"random-fifo", "random-asha"}
    # Paired: the median of per-seed differences (0.1, 0.0, 0.1), not of the medians' gap.
    assert diff["random-fifo"]["median"] == pytest.approx(0.1)
    assert diff["random-asha"]["median"] == pytest.approx(0.0)


def test_real_searches_run_a_banks_task_when_given_one(tmp_path, monkeypatch):
    """search_efficiency.py --bank: every search runs the bank's data and training length."""
    from hposim import real_search

    bank = load_bank(REPO / "benchmarks" / "data" / "curve_bank_task2.npz")
    monkeypatch.setattr(real_search, "TASK", bank_flags(bank.provenance))
    fifo = ["--scheduler", "fifo", "--patience", "{epochs}"]
    s = real_search.settings_for_method(tmp_path, 3, 150, fifo)
    base = bank.provenance["base_config"]
    assert s.base.optim.epochs == s.base.optim.patience == base["epochs"] == bank.epochs
    assert (s.base.data.synthetic_scale, s.base.data.data_seed) == (
        base["synthetic_scale"],
        base["data_seed"],
    )
    monkeypatch.setattr(real_search, "TASK", [])
    assert real_search.settings_for_method(tmp_path, 3, 150, fifo).base.optim.epochs == 15
