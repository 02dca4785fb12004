"""Every private part of Ray Tune and Optuna genretune uses, behind this one module.

Each is used because no public API does the job; the comment at each says why. An upgrade of
Ray or Optuna may rename or remove any of them: `missing_internals()` probes each on the
installed releases, and a fast test (tests/test_internals.py) fails in one line per internal
gone, so an upgrade breaks the test suite, not a user's search in its middle. pyproject.toml
bounds Ray and Optuna to the releases tested (README: Dependencies).

This module lives in `results/`, the lowest layer that imports Ray and Optuna, so that
`results` (the experiment reader) and `search` both reach it.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

# --- Ray Tune: the experiment reader ------------------------------------------------------


def trials_only_analysis(path: str):
    """Ray's ExperimentAnalysis of the experiment at `path` without each trial's results.

    ExperimentAnalysis.__init__ reads every trial's results into a DataFrame per trial
    (`_fetch_trial_dataframes`): most of the time of loading a 1,000-trial experiment, and
    genretune reads the results itself, all trials in one pass. No public option skips it."""
    from ray.tune import ExperimentAnalysis

    class _TrialsOnly(ExperimentAnalysis):
        def _fetch_trial_dataframes(self) -> dict:
            return {}

    return _TrialsOnly(path)


# --- Ray Tune: ASHA's brackets (ray.tune.schedulers.async_hyperband) ------------------------
# LateCutASHA ranks a trial again at a rung it reached alone. Ray keeps who reached which rung
# with which value only in the private `_Bracket` of each trial (`_trial_info`), as a list of
# (milestone, {trial id: signed value}) (`_rungs`); no accessor exposes either.


def asha_bracket(scheduler, trial_id: str):
    """The ASHA bracket `trial_id` runs in (None once the trial has ended)."""
    return scheduler._trial_info.get(trial_id)


def bracket_rungs(bracket) -> list[tuple[float, dict[str, float]]]:
    """A bracket's rungs, lowest milestone last as Ray orders them: (milestone, {trial id:
    value signed so that higher is better})."""
    return bracket._rungs


def asha_time_attr(scheduler) -> str:
    """The result key ASHA counts time in (its `time_attr` argument, kept private)."""
    return scheduler._time_attr


def asha_sign(scheduler) -> float:
    """1.0 when ASHA maximises its metric, -1.0 when it minimises (`_metric_op`: the mode is
    set by Ray after construction and only `metric` has a public accessor)."""
    return scheduler._metric_op


def asha_max_t(scheduler) -> float:
    """ASHA's `max_t` (kept private): no rung is ranked at or past it."""
    return scheduler._max_t


def count_asha_stop(scheduler) -> None:
    """Adds a trial stopped by genretune's rule to the count Ray's `debug_string` prints."""
    scheduler._num_stopped += 1


# --- Ray Tune: a restored SearchGenerator's storage ------------------------------------------


def point_generator_at(generator, path) -> None:
    """Makes a SearchGenerator restored from a saved experiment create its new trials in the
    experiment dir at `path` (a copied or moved experiment) instead of where it was saved.

    Ray saves the generator with its experiment spec (`SearchGenerator._experiment`), whose
    storage (a StorageContext: `storage_fs_path`, `experiment_dir_name`) names the first
    location, and gives new trials that storage; `Tuner.restore` moves the experiment's own
    paths but not this one, and no public API sets it."""
    import copy

    experiment = generator._experiment
    spec = getattr(experiment, "spec", None)
    storage = spec.get("storage") if isinstance(spec, dict) else None
    if storage is None:
        return  # nothing saved: Ray's own paths hold
    here = copy.copy(storage)
    here.storage_fs_path = str(path.parent)
    here.experiment_dir_name = path.name
    spec["storage"] = here
    if getattr(experiment, "storage", None) is storage:
        experiment.storage = here


# --- Ray Tune: OptunaSearch's state (ray.tune.search.optuna) --------------------------------
# genretune's searcher subclasses OptunaSearch to keep the study and the experiment in step
# across restarts and moves (it opens the study again where the experiment is, reopens
# trials Ray runs again, tells cut trials as PRUNED). OptunaSearch exposes none of its state:
# these are the attribute names of the study, of the map from Ray trial id to Optuna trial, of
# the Ray trials told complete, of the search space, of the storage, the study name and the
# sampler. The subclass reads and sets them through these names only.

OPTUNA_SEARCH_STUDY = "_ot_study"
OPTUNA_SEARCH_TRIALS = "_ot_trials"
OPTUNA_SEARCH_COMPLETED = "_completed_trials"
OPTUNA_SEARCH_SPACE = "_space"
OPTUNA_SEARCH_STORAGE = "_storage"
OPTUNA_SEARCH_STUDY_NAME = "_study_name"
OPTUNA_SEARCH_SAMPLER = "_sampler"
OPTUNA_SEARCH_STATE = (
    OPTUNA_SEARCH_STUDY,
    OPTUNA_SEARCH_TRIALS,
    OPTUNA_SEARCH_COMPLETED,
    OPTUNA_SEARCH_SPACE,
    OPTUNA_SEARCH_STORAGE,
    OPTUNA_SEARCH_STUDY_NAME,
    OPTUNA_SEARCH_SAMPLER,
)


def optuna_search_part(searcher, name: str) -> Any:
    """One of OPTUNA_SEARCH_STATE of a Ray OptunaSearch."""
    return getattr(searcher, name)


# --- Optuna: a trial's storage id -----------------------------------------------------------
# `optuna.trial.Trial(study, trial_id)` and the storage's methods take the storage's trial id,
# which Trial and FrozenTrial keep private (`_trial_id`); the public `number` of a Trial is a
# read of the storage each time, and the id is what Ray's OptunaSearch holds.


def optuna_trial_id(trial) -> int:
    """The storage id of an optuna.trial.Trial or FrozenTrial."""
    return trial._trial_id


def optuna_study_storage(study):
    """A Study's storage and the study's id in it (`Study._storage`, `Study._study_id`): a
    trial made from a template (parameters, intermediate values, RUNNING) is created through
    the storage; `Study.add_trial` takes finished trials only."""
    return study._storage, study._study_id


# --- Ray core: the local Ray a search starts (loopback only, ended at once) ----------------


def keep_local_ray_on_loopback() -> None:
    """Ray binds its servers to the node's IP and would replace 127.0.0.1 with the machine's
    address unless its multi-node mode is off (`ray_constants.ENABLE_RAY_CLUSTER`, which
    `ray.init` has no argument for). A local search is never joined by other nodes."""
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False


def end_local_ray_without_grace_period() -> None:
    """Makes `ray.shutdown()` of the local Ray this process started kill its processes at once.

    Ray's shutdown sends each process it started (GCS, raylet, monitors) SIGTERM and waits up
    to a second for it to exit before SIGKILL (`Node.kill_all_processes(allow_graceful=True)`;
    `ray.shutdown` has no argument for it). genretune starts its local Ray with SIGTERM blocked
    (search/stop_signals.py: a stop signal reaches the search, which saves, and not its Ray),
    so each of those waits ran its full second: five seconds after every local search. Killed
    at once, the raylet's own children (workers, agents) would linger, waiting on the GCS, so
    they are killed too. Ray's processes save nothing on their way out. Where processes cannot
    be listed (no /proc), Ray's shutdown is left as it is."""
    import os
    import signal

    from ray._private import worker

    node = worker._global_node
    if node is None or not Path("/proc/self/stat").exists():
        return
    kill_all = node.kill_all_processes

    def kill_all_at_once(*args, **kwargs):
        started = [info.process.pid for infos in node.all_processes.values() for info in infos]
        below = process_descendants(started)
        kwargs["allow_graceful"] = False
        kill_all(*args, **kwargs)
        for pid in below:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass

    node.kill_all_processes = kill_all_at_once


def process_descendants(roots: list[int]) -> list[int]:
    """Every process below `roots` (children, grandchildren, ...), from /proc (Linux)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    found: list[int] = []
    todo = [child for root in roots for child in children.get(root, [])]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


# --- Ray Tune: the controller state a resume restores ---------------------------------------
# TuneController saves with the experiment state (its `runner_data`) the decisions it held back
# while a trial's checkpoint was being saved, and `Tuner.restore` puts them back. A STOP held
# back for a trial whose worker then died outlives the driver: the resumed trial is stopped
# at its first checkpoint (Ray 2.60; seen as a resumed errored trial ending after one epoch).
# No decision of an earlier driver applies to the new actors, and no public API drops them,
# so they are emptied in the saved state before Ray reads it.

HELD_BACK_DECISIONS = "_cached_trial_decisions"
EXPERIMENT_STATE_FILES = "experiment_state-*.json"


def drop_held_back_decisions(experiment_dir: Path) -> list[str]:
    """Empty the decisions an earlier driver held back, in each experiment state file of
    `experiment_dir`; the ids of the trials they were for (a file is rewritten, atomically,
    only when it held one)."""
    import json

    from genretune.output_files import write_text_atomically

    dropped: list[str] = []
    for path in sorted(Path(experiment_dir).glob(EXPERIMENT_STATE_FILES)):
        state = json.loads(path.read_text(encoding="utf-8"))
        held = state.get("runner_data", {}).get(HELD_BACK_DECISIONS)
        if held:
            dropped += list(held)
            state["runner_data"][HELD_BACK_DECISIONS] = {}
            write_text_atomically(path, json.dumps(state))
    return dropped


# --- Loggers whose storage errors genretune turns into one line ---------------------------
# Ray logs a failed sync and Optuna a failed database write from these modules (private module
# paths: the logger names follow them).

STORAGE_ERROR_LOGGERS = (
    "ray.tune.execution.tune_controller",
    "ray.train._internal.syncer",
    "ray.tune.tune",
    "optuna.storages._rdb.storage",
)


# --- The probe ------------------------------------------------------------------------------


def _probe_asha() -> list[str]:
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.schedulers.async_hyperband import _Bracket

    scheduler = ASHAScheduler(metric="m", mode="max", max_t=9, grace_period=1)
    missing = [
        f"ray.tune.schedulers.ASHAScheduler.{name}"
        for name in ("_trial_info", "_time_attr", "_max_t", "_metric_op", "_num_stopped")
        if not hasattr(scheduler, name)
    ]
    bracket = _Bracket(min_t=1, max_t=9, reduction_factor=3, s=0)
    rungs = getattr(bracket, "_rungs", None)
    if not (isinstance(rungs, list) and rungs and isinstance(rungs[0][1], dict)):
        missing.append("ray.tune.schedulers.async_hyperband._Bracket._rungs")
    if not callable(getattr(bracket, "cutoff", None)):
        missing.append("ray.tune.schedulers.async_hyperband._Bracket.cutoff")
    return missing


def _probe_optuna_search() -> list[str]:
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    searcher = OptunaSearch(
        space={"x": optuna.distributions.FloatDistribution(0.0, 1.0)}, metric="m", mode="max"
    )
    missing = [
        f"ray.tune.search.optuna.OptunaSearch.{name}"
        for name in OPTUNA_SEARCH_STATE
        if not hasattr(searcher, name)
    ]
    if not missing and not isinstance(getattr(searcher, OPTUNA_SEARCH_TRIALS), dict):
        missing.append(f"ray.tune.search.optuna.OptunaSearch.{OPTUNA_SEARCH_TRIALS} (a dict)")
    return missing


def _probe_optuna() -> list[str]:
    import optuna

    study = optuna.create_study()
    trial = study.ask()
    missing = []
    if not isinstance(getattr(trial, "_trial_id", None), int):
        missing.append("optuna.trial.Trial._trial_id")
    if not isinstance(getattr(study.trials[0], "_trial_id", None), int):
        missing.append("optuna.trial.FrozenTrial._trial_id")
    for name in ("_storage", "_study_id"):
        if not hasattr(study, name):
            missing.append(f"optuna.study.Study.{name}")
    return missing


def _probe_ray() -> list[str]:
    import tempfile

    from ray.train._internal.storage import StorageContext
    from ray.tune import ExperimentAnalysis
    from ray.tune.search import Searcher, SearchGenerator

    missing = []
    if not hasattr(SearchGenerator(Searcher()), "_experiment"):
        missing.append("ray.tune.search.SearchGenerator._experiment")
    with tempfile.TemporaryDirectory() as tmp:
        storage = StorageContext(storage_path=tmp, experiment_dir_name="probe")
        for name in ("storage_fs_path", "experiment_dir_name"):
            if not isinstance(getattr(storage, name, None), str):
                missing.append(f"ray.train._internal.storage.StorageContext.{name}")
    if not callable(getattr(ExperimentAnalysis, "_fetch_trial_dataframes", None)):
        missing.append("ray.tune.ExperimentAnalysis._fetch_trial_dataframes")
    import inspect

    from ray.tune.execution.tune_controller import TuneController

    kept = inspect.getsource(TuneController.__init__) + inspect.getsource(
        TuneController.__getstate__
    )
    if f"self.{HELD_BACK_DECISIONS} = " not in kept or f'"{HELD_BACK_DECISIONS}"' in kept:
        missing.append(f"ray.tune.execution.tune_controller.TuneController.{HELD_BACK_DECISIONS}")
    ray_constants = importlib.import_module("ray._private.ray_constants")
    if not hasattr(ray_constants, "ENABLE_RAY_CLUSTER"):
        missing.append("ray._private.ray_constants.ENABLE_RAY_CLUSTER")
    from ray._private import node, worker

    if not hasattr(worker, "_global_node"):
        missing.append("ray._private.worker._global_node")
    if "self.all_processes" not in inspect.getsource(node.Node.kill_all_processes):
        missing.append("ray._private.node.Node.all_processes")
    kill_all = inspect.signature(node.Node.kill_all_processes).parameters
    shutdown = inspect.getsource(worker.shutdown)
    if "allow_graceful" not in kill_all or "_global_node.kill_all_processes(" not in shutdown:
        missing.append("ray._private.node.Node.kill_all_processes(allow_graceful=...)")
    for name in STORAGE_ERROR_LOGGERS:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(f"{name} (a logger name)")
    return missing


def missing_internals() -> list[str]:
    """The internals above that the installed Ray and Optuna lack (empty when all are there)."""
    import optuna

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the probe's studies say nothing
    try:
        return [*_probe_asha(), *_probe_optuna_search(), *_probe_optuna(), *_probe_ray()]
    finally:
        optuna.logging.set_verbosity(verbosity)
