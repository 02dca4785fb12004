"""Build and run (or resume) a Ray Tune search: OptunaSearch (TPE) + ASHA + patience stopper."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import optuna

from genretune.data import InputError, first_line
from genretune.model.config import config_from_flat
from genretune.output_files import make_parents, remove_created
from genretune.results import experiment_dir
from genretune.results.experiment import quiet_ray_reader, saved_trials
from genretune.results.internals import drop_held_back_decisions
from genretune.results.writer_lock import WriterLock
from genretune.search import experiment_writer, storage_guard
from genretune.search.checks import (
    check_against_data,
    check_optuna_storage,
    check_settings,
    fit_space_to_data,
)
from genretune.search.ray_cluster import check_trial_fits, connect_ray, trials_at_once
from genretune.search.resume_checks import check_saved_state
from genretune.search.settings import SearchSettings
from genretune.search.start_lines import strategy_line, thin_budget_note
from genretune.search.stop_signals import (
    InterruptWatch,
    SearchInterrupted,
    SearchStopped,
    StopSignals,
    StorageFull,
    blocked_in_children,
    keep_rays_resume_advice_back,
)
from genretune.search.study_storage import open_rdb_storage


def _trainable(s: SearchSettings):
    from ray import tune

    from genretune.search.trainable import dataset_for_trials, train_trial

    dataset = dataset_for_trials(s.base.data, s.data_on_workers)
    resources = {"cpu": s.resources.cpus_per_trial, "gpu": s.resources.gpus_per_trial}
    return tune.with_resources(tune.with_parameters(train_trial, dataset=dataset), resources)


def _monitor(s: SearchSettings):
    from genretune.search.monitoring import TrialMonitor

    return TrialMonitor(
        s.metric,
        s.mode,
        s.base.optim.epochs,
        s.base.optim.patience,
        tuple(s.space),
        interval=s.progress_interval,
        budget_epochs=s.budget_epochs,
        local_storage=not experiment_writer.is_uri(s.storage_path),
        num_samples=s.num_samples,
    )


def _callbacks(s: SearchSettings) -> list:
    """Progress and end reasons, finished trials' checkpoints trimmed; TensorBoard event files
    are written by Ray's default loggers; MLflow when asked."""
    from genretune.search.checkpoint_pruning import TrimFinishedTrials

    callbacks = [_monitor(s), TrimFinishedTrials()]
    if s.mlflow_uri:
        from genretune.search.mlflow_runs import NestedMlflowRuns

        callbacks.append(
            NestedMlflowRuns(
                s.mlflow_uri,
                experiment_name=s.study,
                study=s.study,
                settings=s.to_json(),
                searched=tuple(s.space),
                metric=s.metric,
                mode=s.mode,
                epochs=s.base.optim.epochs,
                patience=s.base.optim.patience,
            )
        )
    return callbacks


def _close_mlflow_runs(s: SearchSettings, results, interrupted: bool) -> None:
    if not s.mlflow_uri:
        return
    from genretune.search.mlflow_runs import close_search_runs

    try:
        reasons = experiment_dir.read_end_reasons(Path(s.experiment_path), warn=False)
    except InputError:
        reasons = {}
    try:
        close_search_runs(s, results, interrupted, reasons)
    except Exception as exc:  # the search itself ran: MLflow trouble is a warning
        print(f"warning: --mlflow-uri: could not close the search's runs ({first_line(exc)})",
              file=sys.stderr)  # fmt: skip


def build_tuner(s: SearchSettings):
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.stopper import CombinedStopper

    from genretune.search.algorithms import build_algorithms, fixed_config
    from genretune.search.checkpoint_pruning import KEEP_WHILE_RUNNING
    from genretune.search.search_generator import RelocatableSearchGenerator
    from genretune.search.storage_guard import StorageGuard

    algorithms = build_algorithms(s, open_rdb_storage(s.optuna_url()))
    stoppers = algorithms.stoppers
    if not experiment_writer.is_uri(s.storage_path):
        stoppers = [*stoppers, StorageGuard(min(trials_at_once(s.resources), s.num_samples))]
    searcher = algorithms.searcher
    # With --ramp-up the searcher is itself the concurrency limiter (capped there).
    if s.resources.max_concurrent and not s.ramp_up:
        searcher = ConcurrencyLimiter(searcher, max_concurrent=s.resources.max_concurrent)
    return tune.Tuner(
        _trainable(s),
        param_space=fixed_config(s),
        tune_config=tune.TuneConfig(
            metric=s.metric,
            mode=s.mode,
            search_alg=RelocatableSearchGenerator(searcher),
            scheduler=algorithms.scheduler,
            num_samples=s.num_samples,
            reuse_actors=True,
            trial_dirname_creator=lambda trial: f"trial_{trial.trial_id}",
        ),
        run_config=tune.RunConfig(
            name=s.name,
            storage_path=s.storage_path,
            stop=CombinedStopper(*stoppers) if len(stoppers) > 1 else stoppers[0],
            callbacks=_callbacks(s),
            failure_config=tune.FailureConfig(max_failures=s.max_failures),
            # The newest checkpoints: each holds the best-so-far weights (checkpoint_pruning).
            checkpoint_config=tune.CheckpointConfig(num_to_keep=KEEP_WHILE_RUNNING),
            verbose=0,
        ),
    )


def errored_trial_ids(results) -> set[str]:
    """Ids of the trials a search's ResultGrid holds as errored for good. Ray's own status in
    memory where it can be read (a Result's error is also set for a trial waiting for a retry),
    else the Results' errors."""
    if results is None:
        return set()
    analysis = getattr(results, "_experiment_analysis", None)
    trials = getattr(analysis, "trials", None)
    if trials is not None:
        return {t.trial_id for t in trials if t.status == "ERROR"}
    return {Path(r.path).name.removeprefix("trial_") for r in results if r.error}


def saved_statuses(experiment_path: str, results=None) -> list[str]:
    """Each trial's status in the experiment state Ray saved. After Ctrl-C Ray saves the state
    before it stops the trials' actors (and marks them TERMINATED in memory), so the saved
    state still shows which trials were running. A trial whose worker died for good is saved
    as RUNNING (Ray does not save a trial's state again when it errors without a live actor):
    the errors in `results` (a ResultGrid) say which."""
    errored = errored_trial_ids(results)
    return [
        "ERROR" if trial.trial_id in errored else trial.status
        for trial in saved_trials(Path(experiment_path))
    ]


def ended_on_its_own(s: SearchSettings, statuses: list[str], spent_epochs: int) -> bool:
    """Whether every trial ended and the search ran what it was asked to: all its trials, or
    its trial-epoch budget."""
    if any(status not in ("TERMINATED", "ERROR") for status in statuses):
        return False
    return len(statuses) >= s.num_samples or bool(
        s.budget_epochs and spent_epochs >= s.budget_epochs
    )


def finished_trials(experiment_path: str) -> int:
    """Trials of an experiment that ended without error (read from its saved state)."""
    return sum(trial.status == "TERMINATED" for trial in saved_trials(Path(experiment_path)))


def run_search(
    s: SearchSettings, resume: bool = False, overwrite: bool = False, verbose: bool = False
):
    """Run (or resume) the experiment and return its ResultGrid (None: already finished).

    The search is the experiment's one writer: it holds the experiment's lock from before it
    writes anything until it returns or raises (a second writer is refused at once)."""
    check_settings(s)
    local = not experiment_writer.is_uri(s.storage_path)
    exp_path = Path(s.experiment_path)
    lock = WriterLock(exp_path) if local else None
    if lock is not None:
        lock.check_free()  # before anything else: the experiment may be mid-write
    replace = False
    quiet_ray_reader()
    keep_rays_resume_advice_back()
    if local:
        replace = experiment_writer.check_experiment_dir(
            exp_path, resume=resume, overwrite=overwrite
        )
        if resume:
            check_saved_state(s)
        if resume and (
            experiment_writer.is_finished(exp_path)
            or finished_trials(s.experiment_path) >= s.num_samples
        ):
            # Restoring would rewrite the experiment state; a finished search is left as it is.
            print(f"experiment {s.name} already finished: nothing to resume", file=sys.stderr)
            return None
    if not resume:
        config_from_flat(s.base.to_flat())  # the fixed part must be valid on its own
    # Load (or generate) the data before Ray starts, so data errors come first and fast.
    from genretune.data import load_dataset

    if not s.data_on_workers:
        dataset = load_dataset(s.base.data)
        if not resume:
            s = fit_space_to_data(s, dataset)
        check_against_data(s, dataset)
    if local:
        experiment_writer.check_writable(exp_path)
    if s.optuna_storage and not resume:
        check_optuna_storage(s.optuna_storage)
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    # A snapshot when a trial has written all the checkpoints it keeps is intended (it keeps
    # the saved state naming checkpoints that exist); Ray's warning about it would only
    # clutter the progress lines.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # Ray starts (or is reached) and shows it can run a trial before anything is written.
    with blocked_in_children():
        started = connect_ray(s.address, verbose)
    try:
        check_trial_fits(s.resources)
        if lock is not None:
            created = make_parents(exp_path.parent)
            try:
                lock.acquire()
            except InputError:
                remove_created(created)
                raise
    except InputError:
        if started:
            import ray

            ray.shutdown()
        raise
    try:
        with StopSignals() as stops:
            return _run_locked(s, resume, replace, local, stops)
    except SearchStopped:
        # Stopped before Ray began: nothing ran, so a new experiment is not left half-made.
        if local and not resume and not (exp_path / experiment_dir.TUNER_FILE).exists():
            experiment_writer.remove_experiment(exp_path)
        raise
    finally:
        experiment_writer.set_experiment_being_run(None)
        if lock is not None:
            lock.release()


def _run_locked(s: SearchSettings, resume: bool, replace: bool, local: bool, stops):
    """The search once every check has passed and the lock is held."""
    exp_path = Path(s.experiment_path)
    # Only now is anything on disk replaced or created.
    if replace:
        experiment_writer.remove_experiment(exp_path)
    if local and not resume:
        experiment_writer.write_settings(exp_path, s.to_json())
    experiment_writer.set_experiment_being_run(
        exp_path if local else None, s.optuna_url(), s.progress_interval
    )
    _announce(s)
    began = time.monotonic()
    results, interrupted = _fit(s, _tuner(s, resume))
    _tidy_after_fit(exp_path if local else None)
    seconds = time.monotonic() - began
    statuses = saved_statuses(s.experiment_path, results)
    unfinished = sum(status not in ("TERMINATED", "ERROR") for status in statuses)
    spent = sum(int(r.metrics.get("training_iteration") or 0) for r in results if r.metrics)
    if storage_guard.storage_full_reason():
        _close_mlflow_runs(s, results, interrupted=True)
        raise StorageFull(results, unfinished, storage_guard.storage_full_reason())
    # A search that ran all it was asked to is finished, even if Ctrl-C came while Ray saved
    # its last state; otherwise a signal or a trial left unfinished means it was interrupted.
    finished = ended_on_its_own(s, statuses, spent)
    if not finished and (interrupted or unfinished or stops.signum):
        print(f"search interrupted after {seconds:.0f}s", file=sys.stderr)
        _close_mlflow_runs(s, results, interrupted=True)
        raise SearchInterrupted(results, unfinished, stops.signum or signal.SIGINT)
    _close_mlflow_runs(s, results, interrupted=False)
    _settle_study(s, results, resume)
    if local and not results.num_errors and finished:
        # Errored trials are restarted by --resume, so a search with any is not marked.
        experiment_writer.mark_finished(exp_path, len(results), seconds)
    print(f"search finished in {seconds:.0f}s", file=sys.stderr)
    return results


def _announce(s: SearchSettings) -> None:
    """The strategy line, and how trials are started or a note on a thin budget."""
    print(strategy_line(s), file=sys.stderr)
    if s.ramp_up:
        cap = f", up to {s.resources.max_concurrent}" if s.resources.max_concurrent else ""
        print(
            f"--ramp-up {s.ramp_up}: {s.ramp_up} trial(s) at first, one more for every trial "
            f"that ends{cap}",
            file=sys.stderr,
        )
        return
    at_once = min(trials_at_once(s.resources), s.num_samples)
    note = thin_budget_note(s.budget_epochs, at_once, s.base.optim.epochs)
    if note:
        print(note, file=sys.stderr)


def _tuner(s: SearchSettings, resume: bool):
    """A new Tuner, or the saved one restored to continue its unfinished and errored trials."""
    from ray import tune

    if not resume:
        return build_tuner(s)
    if not tune.Tuner.can_restore(s.experiment_path):
        raise InputError(f"--resume {s.name}: {s.experiment_path} cannot be restored")
    drop_held_back_decisions(s.experiment_path)  # an earlier driver's; see internals
    return tune.Tuner.restore(
        s.experiment_path, _trainable(s), resume_unfinished=True, resume_errored=True
    )


def _fit(s: SearchSettings, tuner) -> tuple[Any, bool]:
    """(Ray's ResultGrid, whether a signal stopped the fit); a write that failed for lack of
    space is StorageFull."""
    client = bool(s.address) and s.address.startswith("ray://")
    storage_guard.reset()
    storage_guard.quiet_storage_errors()
    try:
        with InterruptWatch(enabled=not client) as watch:
            results = tuner.fit()
    except Exception as exc:
        if not storage_guard.is_storage_error(exc):
            raise
        raise StorageFull(None, 0, f"a write failed ({first_line(exc)})") from None
    return results, watch.interrupted


def _tidy_after_fit(exp_path: Path | None) -> None:
    """Once Ray has returned (its last save done): finished trials' old checkpoints go, and
    epochs run twice keep the rerun's row (exp_path None: storage that is not a local path)."""
    if not storage_guard.storage_full_reason():
        from genretune.search.checkpoint_pruning import trim_after_search

        trim_after_search()
    if exp_path is None:
        return
    for trial, rows in experiment_writer.drop_rerun_rows(exp_path).items():
        print(
            f"{trial}: {rows} epoch(s) logged before a restart from an older checkpoint were "
            "run again; the history keeps the rerun's rows",
            file=sys.stderr,
        )


def _settle_study(s: SearchSettings, results, resume: bool) -> None:
    """Trials Ray stopped as the budget ran out go into the study (before its front is read);
    after a resume, samples a killed driver left open are closed."""
    from genretune.search.study_settlement import (
        close_orphaned_optuna_trials,
        settle_stopped_trials,
    )

    try:
        settle_stopped_trials(s, results, errored_trial_ids(results))
    except Exception as exc:  # the search itself finished: say so, keep its results
        print(
            f"warning: could not tell Optuna the trials stopped at the end ({first_line(exc)}); "
            "the study may hold them as RUNNING",
            file=sys.stderr,
        )
    if resume:
        close_orphaned_optuna_trials(s, results)
