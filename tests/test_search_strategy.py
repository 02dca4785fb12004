"""The search's strategy options on a real local Ray: trials cut by ASHA told to Optuna as
PRUNED, draws around the baseline evaluated first (deterministic per seed), and both kept by
a resumed search."""

from __future__ import annotations

import json
import os
from pathlib import Path

import optuna
import pandas as pd
import pytest
from helpers import TINY_SEARCH, interrupt_search, search_settings

from genretune.data import InputError
from genretune.results.experiment_dir import read_end_reasons
from genretune.search.cli import main
from genretune.search.launch import run_search
from genretune.search.monitoring import END_ASHA

# Starts Ray or trains real models: the full suite (make test), not the fast lane.
pytestmark = pytest.mark.slow

PRUNED, COMPLETE = optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.COMPLETE
FAIL = optuna.trial.TrialState.FAIL


def _study(exp: Path) -> optuna.Study:
    return optuna.load_study(study_name=exp.name, storage=f"sqlite:///{exp / 'optuna.db'}")


def _ray_trial_of(exp: Path, params: dict) -> str:
    """The Ray trial whose config holds these sampled parameters."""
    for path in exp.glob("trial_*/params.json"):
        config = json.loads(path.read_text())
        if all(config.get(k) == v for k, v in params.items()):
            return path.parent.name.removeprefix("trial_")
    raise AssertionError(f"no trial ran {params}")


def test_cut_trials_reach_optuna_as_pruned_with_every_epoch(local_ray, tmp_path):
    s = search_settings(
        tmp_path,
        *("--name", "pruned", "--num-samples", "6", "--epochs", "6", "--patience", "6"),
        *("--grace-period", "1", "--reduction-factor", "2", "--cut-trials-as", "pruned"),
    )
    results = run_search(s)
    assert len(results) == 6 and not results.errors
    exp = tmp_path / "pruned"
    reasons = read_end_reasons(exp)
    assert END_ASHA in {r["end_reason"] for r in reasons.values()}, "ASHA cut no trial"
    study = _study(exp)
    assert len(study.trials) == 6
    for t in study.trials:
        trial_id = _ray_trial_of(exp, t.params)
        curve = pd.read_csv(exp / f"trial_{trial_id}" / "progress.csv")
        best = dict(zip(curve["training_iteration"], curve[s.metric], strict=True))
        if reasons[trial_id]["end_reason"] == END_ASHA:
            assert t.state == PRUNED, (trial_id, t.state)
            # Every epoch's value, the one it was cut on included; the last is its value.
            assert t.intermediate_values == best
            assert t.value == best[max(best)]
        else:
            assert t.state == COMPLETE, (trial_id, t.state)
            assert t.value == best[max(best)]
    # Ray's own behaviour stays available: a cut trial told as COMPLETE with its last value.
    assert s.cut_trials_as == "pruned"


def test_a_trial_stopped_at_the_end_is_told_as_the_searcher_would(tmp_path):
    """What settle_stopped_trials tells the study of a trial Ray stopped without telling the
    searcher (the search budget ran out): the searcher's own rules."""
    from genretune.search.study_settlement import stopped_trial_outcome

    rows = [
        {"training_iteration": 1, "val_f1": 0.2, "val_coverage": 0.5, "best_tuned_val_f1": 0.3},
        {"training_iteration": 2, "val_f1": 0.4, "val_coverage": 0.3, "best_tuned_val_f1": 0.35},
        {"training_iteration": 3, "val_f1": 0.4, "val_coverage": 0.9, "best_tuned_val_f1": 0.35},
    ]
    for row in rows:
        row["epochs_since_best"] = 0
    multi = search_settings(tmp_path, "--objectives", "val_f1,val_coverage", "--epochs", "6")
    # Several objectives: the values of the first epoch best by the first objective.
    assert stopped_trial_outcome(multi, rows) == (COMPLETE, [0.4, 0.3])
    assert stopped_trial_outcome(multi, []) == (optuna.trial.TrialState.FAIL, None)
    # One objective: its last value, complete (Ray's way) or pruned when cut before its end.
    assert stopped_trial_outcome(search_settings(tmp_path, "--epochs", "6"), rows) == (
        COMPLETE,
        0.35,
    )
    pruned = ["--cut-trials-as", "pruned"]
    assert stopped_trial_outcome(search_settings(tmp_path, "--epochs", "6", *pruned), rows) == (
        PRUNED,
        0.35,
    )
    ended = search_settings(tmp_path, "--epochs", "3", *pruned)
    assert stopped_trial_outcome(ended, rows) == (COMPLETE, 0.35)
    no_value = [{k: v for k, v in r.items() if k != "best_tuned_val_f1"} for r in rows]
    assert stopped_trial_outcome(ended, no_value) == (PRUNED, None)
    # A value that is not a number fails the trial, as Optuna does when told one.
    diverged = [*rows[:2], {**rows[2], "best_tuned_val_f1": float("nan")}]
    assert stopped_trial_outcome(ended, diverged) == (FAIL, None)
    no_coverage = [rows[0], {**rows[1], "val_coverage": float("nan")}, rows[2]]
    assert stopped_trial_outcome(multi, no_coverage) == (FAIL, None)


def test_a_restored_searcher_older_than_its_study_follows_the_study(tmp_path):
    """Ray saves the searcher at checkpoints, the study is written at once: a restored
    searcher that still holds a trial as running while the study has finished it ignores its
    results; one the study failed (an errored trial that --resume continues) reopens it."""
    import warnings

    from genretune.search.algorithms import build_searcher

    s = search_settings(tmp_path, *("--name", "stale", "--epochs", "5", "--no-baseline"))
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'optuna.db'}")
    searcher = build_searcher(s, storage)
    for trial_id in ("settled", "failed"):
        assert searcher.suggest(trial_id) is not None
    epoch = lambda n, v: {s.metric: v, "training_iteration": n}  # noqa: E731
    for trial_id in ("settled", "failed"):
        searcher.on_trial_result(trial_id, epoch(1, 0.4))
    searcher.save(str(tmp_path / "searcher.pkl"))
    study = optuna.load_study(study_name="stale", storage=storage)
    study.tell(0, 0.4)  # settled after the save (the search's end)
    study.tell(1, state=optuna.trial.TrialState.FAIL)  # errored after the save
    resumed = build_searcher(s, storage)
    resumed.restore(str(tmp_path / "searcher.pkl"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Optuna warns (or raises) when a finished trial is told
        for trial_id in ("settled", "failed"):
            resumed.on_trial_result(trial_id, epoch(2, 0.5))
            resumed.on_trial_complete(trial_id, epoch(3, 0.6))
    trials = optuna.load_study(study_name="stale", storage=storage).trials
    assert [(t.state, t.value) for t in trials] == [(COMPLETE, 0.4), (FAIL, None), (COMPLETE, 0.6)]
    assert trials[2].user_attrs["ray_trial_id"] == "failed"
    assert trials[2].params == trials[1].params
    assert trials[2].intermediate_values == {1: 0.4, 2: 0.5}


def test_baseline_draws_are_deterministic_per_seed(tmp_path):
    one = search_settings(tmp_path, "--baseline-draws", "4", "--seed", "5")
    again = search_settings(tmp_path, "--baseline-draws", "4", "--seed", "5")
    other = search_settings(tmp_path, "--baseline-draws", "4", "--seed", "6")
    assert one.baseline_draws == again.baseline_draws
    assert one.baseline_draws != other.baseline_draws
    assert len(one.baseline_draws) == 4 and one.initial_points[0] == one.baseline
    for point in one.baseline_draws:
        assert set(point) == set(one.space)
        for key, dist in one.space.items():
            assert dist._contains(dist.to_internal_repr(point[key])), (key, point[key])
    assert search_settings(tmp_path).baseline_draws == ()


def test_tpe_is_the_independent_one_without_a_liar_unless_asked(tmp_path):
    """Optuna 5's TPESampler defaults to multivariate TPE with a constant liar; genretune's
    default is the independent TPE without it, and the flags bring Optuna's back."""
    from genretune.search.algorithms import build_sampler
    from genretune.search.settings import settings_from_json

    plain = search_settings(tmp_path)
    asked = search_settings(tmp_path, "--tpe-multivariate", "--tpe-constant-liar")
    for s, expected in ((plain, False), (asked, True)):
        sampler = build_sampler(s)
        assert isinstance(sampler, optuna.samplers.TPESampler)
        assert (sampler._multivariate, sampler._constant_liar) == (expected, expected)
        again = settings_from_json(json.loads(json.dumps(s.to_json())), s.name, s.storage_path)
        assert (again.tpe_multivariate, again.tpe_constant_liar) == (expected, expected)
    # An experiment saved before these were settings ran with Optuna's defaults.
    old = {k: v for k, v in plain.to_json().items() if not k.startswith("tpe_m")}
    old.pop("tpe_constant_liar")
    assert (
        settings_from_json(old, "x", str(tmp_path)).tpe_multivariate
        and settings_from_json(old, "x", str(tmp_path)).tpe_constant_liar
    )


def test_late_cut_is_on_wherever_asha_ranks_one_objective(tmp_path):
    from genretune.search.algorithms import build_scheduler
    from genretune.search.late_cut_asha import LateCutASHA
    from genretune.search.settings import settings_from_json

    cases = {
        (): True,
        ("--no-late-cut",): False,
        ("--scheduler", "fifo"): False,
        ("--objectives", "val_f1,val_coverage"): False,
        ("--late-cut", "--metric", "val_f1"): True,
    }
    for flags, expected in cases.items():
        s = search_settings(tmp_path, *flags)
        assert s.late_cut is expected, flags
        assert isinstance(build_scheduler(s), LateCutASHA) is expected, flags
        assert (
            settings_from_json(json.loads(json.dumps(s.to_json())), s.name, s.storage_path).late_cut
            is expected
        )
    # An experiment saved before the late cut existed resumes with Ray's ASHA.
    old = search_settings(tmp_path).to_json()
    old.pop("late_cut")
    assert settings_from_json(old, "x", str(tmp_path)).late_cut is False


def test_ramp_up_admits_one_more_trial_for_every_trial_that_ends(tmp_path):
    from genretune.search.algorithms import build_algorithms
    from genretune.search.ramp_up import RampUpLimiter
    from genretune.search.settings import settings_from_json

    s = search_settings(tmp_path, "--ramp-up", "2", "--max-concurrent", "3", "--num-samples", "30")
    assert (
        settings_from_json(json.loads(json.dumps(s.to_json())), s.name, s.storage_path).ramp_up == 2
    )
    searcher = build_algorithms(s, storage=None).searcher
    assert isinstance(searcher, RampUpLimiter)
    ids = (f"t{i}" for i in range(100))
    done = {s.metric: 0.5, "training_iteration": 1, "epochs_since_best": 0}

    def admitted() -> list[str]:
        out = []
        while searcher.suggest(trial_id := next(ids)) is not None:
            out.append(trial_id)
        return out

    first = admitted()
    assert len(first) == 2  # the start
    searcher.on_trial_complete(first[0], result=done)
    second = admitted()
    assert len(second) == 2  # one ended: a limit of 3 with 1 running
    searcher.on_trial_complete(first[1], result=done)
    assert len(admitted()) == 1  # --max-concurrent caps the ramp
    # A resumed search gets the count and the running trials back: Ray saves a wrapper's
    # get_state and the wrapped searcher's save with the experiment, and restores both.
    resumed = build_algorithms(s, storage=None).searcher
    searcher.save(str(tmp_path / "searcher.pkl"))
    resumed.restore(str(tmp_path / "searcher.pkl"))
    resumed.set_state(searcher.get_state())
    assert (resumed.ended, len(resumed.live_trials)) == (2, 3)
    assert resumed.suggest("again") is None
    resumed.on_trial_complete(second[0], result=done)
    assert resumed.ended == 3 and resumed.suggest("again") is not None
    # Without the flag, Ray's --max-concurrent alone limits the search.
    assert not isinstance(build_algorithms(search_settings(tmp_path), None).searcher, RampUpLimiter)
    from genretune.data import InputError
    from genretune.search.checks import check_settings

    with pytest.raises(InputError, match="--ramp-up must be >= 0"):
        check_settings(search_settings(tmp_path, "--ramp-up", "-1"))


def test_an_epoch_rerun_after_a_resume_is_not_told_to_optuna_again(tmp_path):
    """A driver stopped between a result and its checkpoint reruns that epoch on --resume: the
    study keeps every epoch once, and Optuna is not asked to store one twice (it warns)."""
    import warnings

    from genretune.search.algorithms import build_searcher

    s = search_settings(
        tmp_path, *("--name", "rerun", "--epochs", "5", "--cut-trials-as", "pruned")
    )
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'optuna.db'}")
    searcher = build_searcher(s, storage)
    for trial_id in ("saved-late", "saved-early"):
        assert searcher.suggest(trial_id) is not None
    epoch = lambda n, v: {s.metric: v, "training_iteration": n}  # noqa: E731
    searcher.on_trial_result("saved-early", epoch(1, 0.40))
    for n, v in ((1, 0.50), (2, 0.60)):
        searcher.on_trial_result("saved-late", epoch(n, v))
    searcher.save(str(tmp_path / "searcher.pkl"))  # the experiment state, saved now
    searcher.on_trial_result("saved-early", epoch(2, 0.45))
    # Stopped here. Each trial resumes from its epoch-1 checkpoint and runs epoch 2 again.
    resumed = build_searcher(s, storage)
    resumed.restore(str(tmp_path / "searcher.pkl"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for trial_id, rerun in (("saved-late", 0.60), ("saved-early", 0.45)):
            resumed.on_trial_result(trial_id, epoch(2, rerun))
            resumed.on_trial_result(trial_id, epoch(3, rerun + 0.1))
        resumed.on_trial_complete("saved-late", epoch(5, 0.70))  # ran its epochs
        # Cut by ASHA on an epoch that arrived only with the stop: told as pruned with it.
        resumed.on_trial_complete("saved-early", {**epoch(4, 0.5), "epochs_since_best": 1})
    trials = {t.number: t for t in optuna.load_study(study_name="rerun", storage=storage).trials}
    assert trials[0].intermediate_values == {1: 0.50, 2: 0.60, 3: 0.70}
    assert trials[0].state == COMPLETE
    assert trials[1].intermediate_values == {1: 0.40, 2: 0.45, 3: 0.55, 4: 0.5}
    assert trials[1].state == PRUNED


def _finished(exp: Path) -> int:
    """Trials that have ended, from the end-reasons journal the search appends to as each
    ends (Ray copies progress.csv files into the experiment dir only when it saves it)."""
    try:
        return len(read_end_reasons(exp, warn=False))
    except InputError:
        return 0


def test_resume_keeps_the_draws_and_the_pruned_states(local_ray, tmp_path, isolated_cache):
    args = [
        *TINY_SEARCH,
        *("--epochs", "4", "--patience", "4", "--grace-period", "1", "--reduction-factor", "2"),
        *("--num-samples", "6", "--max-concurrent", "2", "--ramp-up", "1", "--baseline-draws", "2"),
        *("--cut-trials-as", "pruned", "--tpe-constant-liar"),
        *("--name", "again", "--storage-path", str(tmp_path)),
    ]
    env = {**os.environ, "GENRETUNE_CACHE_DIR": str(isolated_cache)}
    exp = tmp_path / "again"
    interrupt_search(["search", *args], env, lambda: _finished(exp) >= 1)
    saved = json.loads((exp / "genretune_search.json").read_text())
    assert saved["cut_trials_as"] == "pruned" and len(saved["baseline_draws"]) == 2
    assert saved["tpe_constant_liar"] is True and saved["tpe_multivariate"] is False
    assert saved["late_cut"] is True and saved["ramp_up"] == 1
    # Work is left for the resume (on a loaded machine more trials may have been asked, even
    # ended, between the signal and the search's stop: only fewer than 6 ended is needed).
    assert sum(t.state in (PRUNED, COMPLETE) for t in _study(exp).trials) < 6

    code = main(["search", "--resume", "again", "--storage-path", str(tmp_path)])
    assert code == 0
    study = _study(exp)
    finished = [t for t in study.trials if t.state in (PRUNED, COMPLETE)]
    assert len(finished) == 6
    first = sorted(study.trials, key=lambda t: t.number)[:3]
    assert [t.params for t in first] == [saved["baseline"], *saved["baseline_draws"]]
    reasons = read_end_reasons(exp)
    for t in finished:
        cut = reasons[_ray_trial_of(exp, t.params)]["end_reason"] == END_ASHA
        assert t.state == (PRUNED if cut else COMPLETE), t.number
    assert any(t.state == PRUNED for t in finished), "ASHA cut no trial"
    # --ramp-up 1: the baseline ran alone; the draws started once it had ended.
    rows = {
        i: pd.read_csv(exp / f"trial_{_ray_trial_of(exp, t.params)}" / "progress.csv")
        for i, t in enumerate(first)
    }
    assert rows[1]["timestamp"].min() >= rows[0]["timestamp"].max()
    assert rows[2]["timestamp"].min() >= rows[0]["timestamp"].max()
