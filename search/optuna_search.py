"""The Optuna side of a search: Ray Tune's OptunaSearch with a choice of how Optuna hears of a
trial cut before its end, and the clean-up of samples a killed driver left open.

Ray's OptunaSearch tells Optuna every stopped trial as COMPLETE with the value of its last
result, so a trial ASHA cut at epoch 5 ranks beside one that trained all its epochs. With
`cut_as_pruned`, a trial cut by ASHA or the search budget is told as PRUNED instead, its
per-epoch values (including the one it was cut on) kept as intermediate values: Optuna's TPE
then ranks every finished trial above every pruned one, pruned ones by how far they got and
then by their last value. Trials that ended on their own (patience, last epoch) stay COMPLETE.

A resumed search reruns the epochs after a trial's last checkpoint; an epoch the study already
holds is not told again (Optuna would keep the first value and warn; the rerun's is the same).
A trial that errored is told FAIL; when `--resume` runs it again, it gets a new study trial with
its parameters and the epochs it had reported (Optuna cannot reopen a finished trial).

Each study trial carries its Ray trial's id (user attribute `ray_trial_id`) from the moment it is
drawn, so `settle_stopped_trials` (study_settlement.py) can tell the study what became of the
trials Ray stopped without telling the searcher (when the search budget ran out).
"""

from __future__ import annotations

import contextlib
import pickle
from collections.abc import Iterator
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from genretune.results.internals import (
    OPTUNA_SEARCH_COMPLETED,
    OPTUNA_SEARCH_SAMPLER,
    OPTUNA_SEARCH_SPACE,
    OPTUNA_SEARCH_STORAGE,
    OPTUNA_SEARCH_STUDY,
    OPTUNA_SEARCH_STUDY_NAME,
    OPTUNA_SEARCH_TRIALS,
    optuna_search_part,
    optuna_study_storage,
    optuna_trial_id,
)
from genretune.search.experiment_writer import study_url_being_run
from genretune.search.study_storage import open_rdb_storage


class _UnopenedRDBStorage(optuna.storages.RDBStorage):
    """An RDBStorage read back from a searcher saved by an older genretune, without connecting
    to the database it was saved with (RDBStorage connects, and creates missing tables, while
    it is unpickled: a copy of an experiment would open the original's optuna.db, or create one
    where it used to be)."""

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


class _SearcherUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module.startswith("optuna.storages") and name == "RDBStorage":
            return _UnopenedRDBStorage
        return super().find_class(module, name)


_LEAVE_UNOPENED: list[bool] = []


@contextlib.contextmanager
def searchers_left_unopened() -> Iterator[None]:
    """Searchers unpickled inside (checking an experiment's saved state) open no database."""
    _LEAVE_UNOPENED.append(True)
    try:
        yield
    finally:
        _LEAVE_UNOPENED.pop()


def searcher_unpickler(file) -> pickle.Unpickler:
    """An unpickler of a saved experiment's objects that leaves Optuna storages unopened."""
    return _SearcherUnpickler(file)


def read_searcher_state(checkpoint_path: str) -> dict[str, Any]:
    """A saved searcher's state (its attributes), no database opened."""
    with open(checkpoint_path, "rb") as fh:
        state = _SearcherUnpickler(fh).load()
    if not isinstance(state, dict) or OPTUNA_SEARCH_TRIALS not in state:
        raise ValueError("not a saved Optuna searcher")
    return state


class PruningOptunaSearch(OptunaSearch):
    def __init__(self, *args, cut_as_pruned: bool, epochs: int, patience: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.cut_as_pruned = cut_as_pruned
        self.epochs = epochs
        self.patience = patience
        # Several objectives: each trial's result at its best epoch by the first objective (the
        # epoch `genretune train` keeps), whose values go to Optuna when the trial ends.
        self.best_results: dict[str, dict[str, Any]] = {}
        self.last_step: dict[str, int] = {}  # the last epoch told to Optuna, per trial
        self._held: dict[str, set[int]] = {}

    # Ray's OptunaSearch keeps its state private; these read it through genretune's one door
    # to Ray's and Optuna's internals (results/internals.py).

    @property
    def study(self) -> optuna.Study:
        return optuna_search_part(self, OPTUNA_SEARCH_STUDY)

    @property
    def study_trials(self) -> dict[str, optuna.trial.Trial]:
        """Ray trial id -> its Optuna trial (the live map OptunaSearch keeps)."""
        return optuna_search_part(self, OPTUNA_SEARCH_TRIALS)

    @property
    def told_complete(self) -> set[str]:
        """Ray trial ids whose end the study has been told (the live set)."""
        return optuna_search_part(self, OPTUNA_SEARCH_COMPLETED)

    @property
    def searched_space(self):
        return optuna_search_part(self, OPTUNA_SEARCH_SPACE)

    def _storage_part(self):
        return optuna_search_part(self, OPTUNA_SEARCH_STORAGE)

    # `_held`: the running study trials this object has read from the study since it was made
    # or restored, with the epochs the study holds of each. Only this object writes them while
    # it runs, so a result needs no read of the study after the first (a read per result cost
    # about a tenth of the driver's time with 32 trials at once). Never saved: a restored copy
    # reads the study again.

    def _confirm_running(self, trial_id: str, epochs) -> None:
        self._held[trial_id] = set(epochs)

    # Saved and restored without the study's database connection: Ray pickles the searcher
    # into the experiment (tuner.pkl, searcher-state-*.pkl), and a connection saved there would
    # name the experiment's first location. It is opened again where the experiment is now.

    def _portable_state(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        if isinstance(self._storage_part(), optuna.storages.RDBStorage):
            state[OPTUNA_SEARCH_STORAGE] = self._storage_part().url
            state[OPTUNA_SEARCH_STUDY] = None
            state[OPTUNA_SEARCH_TRIALS] = {
                tid: optuna_trial_id(t) for tid, t in self.study_trials.items()
            }
        state.pop("_held", None)
        return state

    def _reopen(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._held = {}
        saved = self._storage_part()
        if isinstance(saved, optuna.storages.RDBStorage):
            saved = saved.url  # saved by an older genretune, unpickled unopened
        if not isinstance(saved, str):
            return  # an in-memory study (tests, the simulator): saved whole
        if _LEAVE_UNOPENED:  # read by a check of the saved state, not to run
            setattr(self, OPTUNA_SEARCH_STORAGE, saved)
            return
        url = study_url_being_run() or saved
        storage = open_rdb_storage(url)
        setattr(self, OPTUNA_SEARCH_STORAGE, storage)
        study = optuna.load_study(
            study_name=optuna_search_part(self, OPTUNA_SEARCH_STUDY_NAME),
            storage=storage,
            sampler=optuna_search_part(self, OPTUNA_SEARCH_SAMPLER),
        )
        setattr(self, OPTUNA_SEARCH_STUDY, study)
        trials = {
            trial_id: optuna.trial.Trial(
                study, trial if isinstance(trial, int) else optuna_trial_id(trial)
            )
            for trial_id, trial in self.study_trials.items()
        }
        setattr(self, OPTUNA_SEARCH_TRIALS, trials)

    def __getstate__(self) -> dict[str, Any]:
        return self._portable_state()

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._reopen(state)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as fh:
            pickle.dump(self._portable_state(), fh)

    def restore(self, checkpoint_path: str) -> None:
        self._reopen(read_searcher_state(checkpoint_path))

    def _remember_best(self, trial_id: str, result: dict[str, Any] | None) -> None:
        first = self.metric[0]
        if not result or result.get(first) is None:
            return
        sign = 1.0 if self.mode[0] == "max" else -1.0
        best = self.best_results.get(trial_id)
        if best is None or sign * result[first] > sign * best[first]:
            self.best_results[trial_id] = {m: result.get(m) for m in self.metric}

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        config = super().suggest(trial_id)
        if trial_id in self.study_trials:
            self.study_trials[trial_id].set_user_attr(RAY_TRIAL_ID, trial_id)
        return config

    def _open_trial(self, trial_id: str, result: dict[str, Any] | None) -> bool:
        """Whether the study has an open trial for `trial_id`, opening one when Ray runs again
        a trial whose study trial failed (`--resume` of an errored trial) or one the searcher
        never drew (its parameters from the result's config)."""
        known = self.study_trials.get(trial_id)
        if known is not None and trial_id in self._held:
            return True
        if known is not None:
            # The study is the truth: this object may be a restored copy older than it (Ray
            # saves the searcher at checkpoints; the study is written at once, and trials the
            # search stopped at its end are settled after Ray's last save).
            old = known.storage.get_trial(optuna_trial_id(known))
            if old.state == TrialState.RUNNING:
                self.told_complete.discard(trial_id)
                if RAY_TRIAL_ID not in old.user_attrs:  # drawn before ids were tagged at once
                    known.set_user_attr(RAY_TRIAL_ID, trial_id)
                self._confirm_running(trial_id, old.intermediate_values)
                return True
            if old.state != TrialState.FAIL:
                self.told_complete.add(trial_id)
                return False  # finished for good: its results are not told again
            params, distributions = old.params, old.distributions
            reported = dict(old.intermediate_values)
        else:
            config = _config_of(result)
            space = self.searched_space
            if callable(space) or not config or any(k not in config for k in space):
                return False
            params = {k: config[k] for k in space}
            distributions, reported = dict(space), {}
        frozen = optuna.trial.create_trial(
            state=TrialState.RUNNING,
            params=params,
            distributions=distributions,
            intermediate_values=reported,
            user_attrs={RAY_TRIAL_ID: trial_id},
        )
        storage, study_id = optuna_study_storage(self.study)
        new_id = storage.create_new_trial(study_id, template_trial=frozen)
        self.study_trials[trial_id] = optuna.trial.Trial(self.study, new_id)
        self.told_complete.discard(trial_id)
        self._confirm_running(trial_id, reported)
        return True

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        if not self._open_trial(trial_id, result):
            return
        if isinstance(self.metric, list):
            self._remember_best(trial_id, result)
        else:
            self.last_step[trial_id] = result.get("training_iteration")
            if self._study_holds_epoch(trial_id, result.get("training_iteration")):
                return
        super().on_trial_result(trial_id, result)
        if not isinstance(self.metric, list) and trial_id in self._held:
            self._held[trial_id].add(result.get("training_iteration"))

    def _study_holds_epoch(self, trial_id: str, step: int | None) -> bool:
        """Whether the study has this epoch of the trial already (read from its storage: the
        trial object a resumed search unpickled may lag behind it)."""
        ot_trial = self.study_trials.get(trial_id)
        if ot_trial is None or step is None or trial_id in self.told_complete:
            return False
        if trial_id in self._held:
            return step in self._held[trial_id]
        return step in ot_trial.storage.get_trial(optuna_trial_id(ot_trial)).intermediate_values

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        from genretune.search.algorithms import trial_was_cut

        if error and trial_id in self.told_complete:
            return  # failed again before a result: the study has it as FAIL already
        if not self._open_trial(trial_id, result):
            return
        if isinstance(self.metric, list) and not error:
            # Ray does not pass the result a trial is stopped on to on_trial_result.
            self._remember_best(trial_id, result)
            best = self.best_results.pop(trial_id, None)
            if best is not None and all(v is not None for v in best.values()):
                result = {**(result or {}), **best}
        cut = (
            self.cut_as_pruned
            and not error
            and trial_id not in self.told_complete
            and trial_id in self.study_trials
            and trial_was_cut(result or {}, self.epochs, self.patience)
            and isinstance(self.metric, str)
            and result.get(self.metric) is not None
        )
        if not cut:
            self._held.pop(trial_id, None)  # read again if Ray runs it again (a retried error)
            super().on_trial_complete(trial_id, result=result, error=error)
            return
        ot_trial = self.study_trials[trial_id]
        # Ray does not pass the result a trial is stopped on to on_trial_result (a trial the
        # budget ends had its last result reported already).
        step = result["training_iteration"]
        if self.last_step.pop(trial_id, None) != step and not self._study_holds_epoch(
            trial_id, step
        ):
            ot_trial.report(result[self.metric], step)
        self._held.pop(trial_id, None)
        self.study.tell(ot_trial, state=TrialState.PRUNED)
        self.told_complete.add(trial_id)


RAY_TRIAL_ID = "ray_trial_id"  # the user attribute tying a study trial to its Ray trial


def _config_of(result: dict[str, Any] | None) -> dict[str, Any]:
    """A Ray result's config, nested (on_trial_result) or flattened (on_trial_complete)."""
    if not result:
        return {}
    if isinstance(result.get("config"), dict):
        return result["config"]
    return {k.removeprefix("config/"): v for k, v in result.items() if k.startswith("config/")}
