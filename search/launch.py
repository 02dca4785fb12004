"""Build and run (or resume) a Ray Tune search: OptunaSearch (TPE) + ASHA + patience stopper."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import optuna
import optuna.distributions as od

from genretune.data import InputError
from genretune.model.config import TrainConfig, config_from_flat
from genretune.search import experiment
from genretune.search.space import DECISION_KEYS, Space

DECISION_SPACE, DECISION_TUNED = "space", "tuned"
SAMPLERS = ("tpe", "random")
SCHEDULERS = ("asha", "fifo")
LOOPBACK = "127.0.0.1"
# Keys Ray Tune adds to every reported result.
RAY_METRICS = ("training_iteration", "time_total_s", "time_this_iter_s")
# How Optuna hears of a trial cut before its end (by ASHA or the budget).
CUT_AS_COMPLETE, CUT_AS_PRUNED = "complete", "pruned"
CUT_TRIALS_AS = (CUT_AS_COMPLETE, CUT_AS_PRUNED)


# Optuna's default.
TPE_STARTUP_TRIALS = 10
# Draws around the baseline: standard deviation as a share of each parameter's range.
BASELINE_SPREAD = 0.15


@dataclass(frozen=True)
class Resources:
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_concurrent: int | None = None


@dataclass(frozen=True)
class SearchSettings:
    name: str
    storage_path: str
    profile: str
    base: TrainConfig  # every non-searched value, including the data source
    space: Space
    baseline: dict[str, Any]  # the first trial ({} = none)
    metric: str
    mode: str
    num_samples: int
    grace_period: int
    reduction_factor: int
    seed: int
    decision: str = DECISION_SPACE
    resources: Resources = field(default_factory=Resources)
    max_failures: int = 2
    address: str | None = None
    data_on_workers: bool = False
    optuna_storage: str | None = None
    progress_interval: float = 30.0
    mlflow_uri: str | None = None
    sampler: str = "tpe"
    scheduler: str = "asha"
    budget_epochs: int | None = None
    tpe_startup_trials: int = TPE_STARTUP_TRIALS
    baseline_draws: tuple[dict[str, Any], ...] = ()  # trials drawn around the baseline, next
    cut_trials_as: str = CUT_AS_COMPLETE

    @property
    def initial_points(self) -> list[dict[str, Any]]:
        """What the searcher evaluates first, in order: the baseline and the draws around it."""
        return [self.baseline, *self.baseline_draws] if self.baseline else []

    @property
    def experiment_path(self) -> str:
        return f"{self.storage_path.rstrip('/')}/{self.name}"

    def optuna_url(self) -> str:
        if self.optuna_storage:
            return self.optuna_storage
        return f"sqlite:///{Path(self.experiment_path) / experiment.OPTUNA_DB}"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "storage_path": self.storage_path,
            "profile": self.profile,
            "base_config": self.base.to_flat(),
            "space": {k: od.distribution_to_json(v) for k, v in self.space.items()},
            "baseline": self.baseline,
            "baseline_draws": list(self.baseline_draws),
            "cut_trials_as": self.cut_trials_as,
            "metric": self.metric,
            "mode": self.mode,
            "num_samples": self.num_samples,
            "grace_period": self.grace_period,
            "reduction_factor": self.reduction_factor,
            "seed": self.seed,
            "decision": self.decision,
            "resources": vars(self.resources),
            "max_failures": self.max_failures,
            "data_on_workers": self.data_on_workers,
            "optuna_storage": self.optuna_url(),
            "study_name": self.name,
            "sampler": self.sampler,
            "scheduler": self.scheduler,
            "budget_epochs": self.budget_epochs,
            "tpe_startup_trials": self.tpe_startup_trials,
        }


def settings_from_json(payload: dict[str, Any], **overrides: Any) -> SearchSettings:
    return SearchSettings(
        name=payload["name"],
        storage_path=payload["storage_path"],
        profile=payload["profile"],
        base=config_from_flat(payload["base_config"]),
        space={k: od.json_to_distribution(v) for k, v in payload["space"].items()},
        # Experiments written before the baseline was named so call it the seed point.
        baseline=payload.get("baseline", payload.get("seed_point", {})),
        baseline_draws=tuple(payload.get("baseline_draws", ())),
        cut_trials_as=payload.get("cut_trials_as", CUT_AS_COMPLETE),
        metric=payload["metric"],
        mode=payload["mode"],
        num_samples=payload["num_samples"],
        grace_period=payload["grace_period"],
        reduction_factor=payload["reduction_factor"],
        seed=payload["seed"],
        decision=payload["decision"],
        resources=Resources(**payload["resources"]),
        max_failures=payload["max_failures"],
        data_on_workers=payload["data_on_workers"],
        optuna_storage=payload["optuna_storage"],
        sampler=payload.get("sampler", "tpe"),
        scheduler=payload.get("scheduler", "asha"),
        budget_epochs=payload.get("budget_epochs"),
        tpe_startup_trials=payload.get("tpe_startup_trials", TPE_STARTUP_TRIALS),
        **overrides,
    )


def check_mlflow_uri(uri: str) -> None:
    """Reach the tracking store before any trial runs, so a typo does not fail the search later."""
    try:
        import mlflow
    except ImportError:
        raise InputError("--mlflow-uri needs MLflow: pip install 'genretune[mlflow]'") from None
    # A quick answer: by default MLflow retries an unreachable server for minutes.
    probe_env = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
    saved = {key: os.environ.get(key) for key in probe_env}
    os.environ.update({k: v for k, v in probe_env.items() if saved[k] is None})
    try:
        mlflow.MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
    except Exception as exc:  # MLflow raises many types; the first line says what is wrong
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"--mlflow-uri {uri}: {first[:300]}") from None
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)


def check_settings(s: SearchSettings) -> None:
    """Everything that can be wrong before Ray starts."""
    r = s.resources
    if r.cpus_per_trial <= 0:
        raise InputError("--cpus-per-trial must be > 0")
    if r.gpus_per_trial < 0 or (r.gpus_per_trial > 1 and r.gpus_per_trial != int(r.gpus_per_trial)):
        raise InputError("--gpus-per-trial must be a fraction in [0, 1] or a whole number")
    if r.max_concurrent is not None and r.max_concurrent < 1:
        raise InputError("--max-concurrent must be >= 1")
    if s.num_samples < 1:
        raise InputError("--num-samples must be >= 1")
    if s.grace_period < 1 or s.grace_period > s.base.optim.epochs:
        raise InputError(f"--grace-period must be in [1, epochs={s.base.optim.epochs}]")
    if s.reduction_factor < 2:
        raise InputError("--reduction-factor must be >= 2")
    if s.mode not in ("max", "min"):
        raise InputError("--mode must be max or min")
    from genretune.model.training import REPORTED_METRICS

    if s.metric not in (*REPORTED_METRICS, *RAY_METRICS):
        raise InputError(
            f"--metric {s.metric}: trials do not report it (they report "
            f"{', '.join(sorted(k for k in REPORTED_METRICS if k.startswith(('val_', 'best_'))))}"
            ", ...)"
        )
    if s.max_failures < 0:
        raise InputError("--max-failures must be >= 0")
    if s.sampler not in SAMPLERS:
        raise InputError(f"--sampler must be one of {', '.join(SAMPLERS)}")
    if s.tpe_startup_trials < 1:
        raise InputError("--tpe-startup must be >= 1")
    if s.cut_trials_as not in CUT_TRIALS_AS:
        raise InputError(f"--cut-trials-as must be one of {', '.join(CUT_TRIALS_AS)}")
    if s.scheduler not in SCHEDULERS:
        raise InputError(f"--scheduler must be one of {', '.join(SCHEDULERS)}")
    if s.budget_epochs is not None and s.budget_epochs < 1:
        raise InputError("--budget-epochs must be >= 1")
    if s.decision == DECISION_TUNED and any(k in s.space for k in DECISION_KEYS):
        raise InputError("--decision tuned: threshold/top_k cannot also be searched")
    if s.mlflow_uri:
        check_mlflow_uri(s.mlflow_uri)
    if experiment.is_uri(s.storage_path) and not s.optuna_storage:
        raise InputError("--optuna-storage URL is required with a cloud --storage-path")
    # Every corner of the space must make a valid config: check the bounds against it.
    for name, dist in s.space.items():
        values = (
            dist.choices if isinstance(dist, od.CategoricalDistribution) else (dist.low, dist.high)
        )
        for value in values:
            try:
                config_from_flat({**s.base.to_flat(), name: value})
            except InputError as exc:
                raise InputError(f"search space: {name}={value!r} is invalid ({exc})") from None


def fit_space_to_data(s: SearchSettings, dataset) -> SearchSettings:
    """Narrow the default space to a small dataset: the default min-samples range (50..1000) is
    sized for FMA-scale data and top-K choices go up to 20; on fewer or smaller genres these
    would keep no genre or exceed the genre count. A space the user gave is left as it is (and
    checked by `check_against_data`)."""
    from genretune.search.profiles import get_profile
    from genretune.search.space import default_space, nearest

    defaults = default_space(get_profile(s.profile))
    if not s.base.data.is_synthetic:
        defaults["min_samples_per_genre"] = default_space(get_profile("full"))[
            "min_samples_per_genre"
        ]
    space, notes = dict(s.space), []
    dist = space.get("min_samples_per_genre")
    top = int(dataset.labels.sum(axis=0).max())
    if dist is not None and dist == defaults["min_samples_per_genre"] and dist.high > top:
        space["min_samples_per_genre"] = od.IntDistribution(min(dist.low, top), top, log=True)
        notes.append(f"min_samples_per_genre {min(dist.low, top)}..{top}")
    dist, n_genres = space.get("top_k"), len(dataset.genres)
    if dist is not None and dist == defaults["top_k"]:
        choices = tuple(c for c in dist.choices if c is None or c <= n_genres)
        if choices != dist.choices:
            space["top_k"] = od.CategoricalDistribution(choices)
            notes.append(f"top_k {choices}")
    if not notes:
        return s
    print(
        f"search space fitted to {dataset.source} ({n_genres} genres, the most common with "
        f"{top} tracks): {'; '.join(notes)}",
        file=sys.stderr,
    )
    moved = lambda point: {k: nearest(dist, point.get(k)) for k, dist in space.items()}  # noqa: E731
    return replace(
        s,
        space=space,
        baseline=moved(s.baseline) if s.baseline else {},
        baseline_draws=tuple(moved(p) for p in s.baseline_draws),
    )


def check_against_data(s: SearchSettings, dataset) -> None:
    """What only the data can tell, before Ray starts: every corner of the genre filter keeps a
    genre and a training track, and top-K is not above the genre count (a trial whose filter
    keeps fewer genres than K simply predicts them all)."""
    from genretune.model.prepare import prepare_data

    values: dict[str, list] = {}
    for key in ("min_samples_per_genre", "max_genres"):
        dist = s.space.get(key)
        if isinstance(dist, od.CategoricalDistribution):
            values[key] = list(dist.choices)
        elif dist is not None:
            values[key] = [dist.low, dist.high]
    # A searched key's fixed value is never used: every corner takes the other keys' first value.
    first = {key: options[0] for key, options in values.items()}
    corners = [{}] + [{key: v} for key, options in values.items() for v in options]
    for corner in corners:
        cfg = config_from_flat({**s.base.to_flat(), **first, **corner})
        try:
            prepare_data(dataset, cfg.filter, cfg.loss)
        except InputError as exc:
            if not corner:
                raise
            ((key, value),) = corner.items()
            raise InputError(
                f"search space: {key}={value!r} is invalid ({exc}); narrow it with --space "
                f"or fix it with --{key.replace('_', '-')}"
            ) from None
    n_genres = len(dataset.genres)
    dist = s.space.get("top_k")
    if dist is None:
        values, flag = (s.base.decision.top_k,), "--top-k"
    elif isinstance(dist, od.CategoricalDistribution):
        values, flag = dist.choices, "search space: top_k"
    else:
        values, flag = (dist.high,), "search space: top_k"
    for value in values:
        if value is not None and value > n_genres:
            raise InputError(f"{flag} {value} is above the dataset's {n_genres} genres")


def check_address(address: str, timeout: float = 5.0) -> None:
    """A Ray cluster answers at HOST:PORT (a GCS address or ray://HOST:PORT), within seconds:
    ray.init would otherwise retry for minutes."""
    import socket

    if address == "auto":
        return
    hostport = address.removeprefix("ray://").rstrip("/")
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(f"--address {address}: expected HOST:PORT (e.g. 10.0.0.5:6379) or auto")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else exc.strerror or str(exc)
        raise InputError(f"--address {address}: no Ray cluster answers there ({reason})") from None


def check_optuna_storage(url: str) -> None:
    """The study database opens (its driver is installed, it answers) before Ray starts."""
    try:
        optuna.storages.RDBStorage(url)
    except Exception as exc:  # SQLAlchemy raises many types (no driver, bad URL, refused)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"--optuna-storage {url}: cannot open it ({first[:200]})") from None


def check_trial_fits(resources: Resources) -> None:
    """Some node of the cluster can hold one trial's CPUs and GPUs; else the search would wait
    for resources forever."""
    import ray

    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    needs = {"CPU": resources.cpus_per_trial, "GPU": resources.gpus_per_trial}
    if any(all(node.get(k, 0) >= v for k, v in needs.items()) for node in nodes):
        return
    gpus = max((node.get("GPU", 0) for node in nodes), default=0)
    cpus = max((node.get("CPU", 0) for node in nodes), default=0)
    if resources.gpus_per_trial > gpus:
        where = "this machine has no GPU" if not gpus else f"its nodes have at most {gpus:g}"
        raise InputError(f"--gpus-per-trial {resources.gpus_per_trial:g}: {where}")
    raise InputError(
        f"--cpus-per-trial {resources.cpus_per_trial:g}: the nodes have at most {cpus:g} CPUs"
    )


@contextlib.contextmanager
def _stderr_kept_back(show: bool):
    """Ray's start-up lines (its C++ core writes to file descriptor 2) held back, and shown
    only when `show`: a search prints its own progress, and a refused one only its error."""
    captured = tempfile.TemporaryFile(mode="w+b")
    saved_fd = os.dup(2)
    sys.stderr.flush()
    os.dup2(captured.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved_fd, 2)
        os.close(saved_fd)
        if show:
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
        captured.close()


def connect_ray(address: str | None, verbose: bool) -> bool:
    """Start a local Ray or join the cluster at `address`; True when this call started Ray."""
    import ray

    if ray.is_initialized():
        return False
    if address:
        check_address(address)
    # If something answers that is not a Ray cluster, say so within seconds (Ray would retry
    # for about 20 s, printing a warning line per attempt).
    wait = "RAY_gcs_server_port_wait_time_s"
    saved = os.environ.get(wait)
    if address:
        os.environ.setdefault(wait, "5")
    try:
        with _stderr_kept_back(verbose):
            _ray_init(address, verbose)
    except (ConnectionError, RuntimeError) as exc:
        if not address:
            raise
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"--address {address}: not a reachable Ray cluster ({reason})") from None
    finally:
        if saved is None:
            os.environ.pop(wait, None)
    return True


def _ray_init(address: str | None, verbose: bool) -> None:
    import ray

    if ray.is_initialized():
        return
    if address:
        # Code travels with the job unless the nodes have genretune installed themselves.
        from genretune.data.shipping import staged_code

        code = staged_code()
        ray.init(address=address, runtime_env={"py_modules": [code]}, log_to_driver=verbose)
    else:
        # A Ray of our own listens on the loopback interface only: Ray binds its servers to
        # the node's IP, and would replace 127.0.0.1 with the machine's address unless its
        # multi-node mode is off (the process then cannot be joined by other nodes, which a
        # local search never needs).
        from ray._private import ray_constants

        if hasattr(ray_constants, "ENABLE_RAY_CLUSTER"):
            ray_constants.ENABLE_RAY_CLUSTER = False
        ray.init(
            include_dashboard=False,
            log_to_driver=verbose,
            configure_logging=verbose,
            _node_ip_address=LOOPBACK,
        )


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
        reasons_dir=None if experiment.is_uri(s.storage_path) else s.experiment_path,
    )


def _callbacks(s: SearchSettings) -> list:
    """Progress and end reasons; TensorBoard event files are written by Ray's default loggers;
    MLflow when asked."""
    callbacks = [_monitor(s)]
    if s.mlflow_uri:
        from ray.air.integrations.mlflow import MLflowLoggerCallback

        callbacks.append(MLflowLoggerCallback(tracking_uri=s.mlflow_uri, experiment_name=s.name))
    return callbacks


def build_tuner(s: SearchSettings):
    from ray import tune
    from ray.tune.stopper import CombinedStopper

    from genretune.search.algorithms import build_algorithms, fixed_config

    algorithms = build_algorithms(s, optuna.storages.RDBStorage(s.optuna_url()))
    stoppers = algorithms.stoppers
    return tune.Tuner(
        _trainable(s),
        param_space=fixed_config(s),
        tune_config=tune.TuneConfig(
            metric=s.metric,
            mode=s.mode,
            search_alg=algorithms.searcher,
            scheduler=algorithms.scheduler,
            num_samples=s.num_samples,
            max_concurrent_trials=s.resources.max_concurrent,
            reuse_actors=True,
            trial_dirname_creator=lambda trial: f"trial_{trial.trial_id}",
        ),
        run_config=tune.RunConfig(
            name=s.name,
            storage_path=s.storage_path,
            stop=CombinedStopper(*stoppers) if len(stoppers) > 1 else stoppers[0],
            callbacks=_callbacks(s),
            failure_config=tune.FailureConfig(max_failures=s.max_failures),
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=2, checkpoint_score_attribute=s.metric, checkpoint_score_order=s.mode
            ),
            verbose=0,
        ),
    )


def finished_trials(experiment_path: str) -> int:
    """Trials of an experiment that ended without error (read from its saved state)."""
    from ray import tune

    analysis = tune.ExperimentAnalysis(experiment_path)
    return sum(trial.status == "TERMINATED" for trial in analysis.trials)


def run_search(
    s: SearchSettings, resume: bool = False, overwrite: bool = False, verbose: bool = False
):
    """Run (or resume) the experiment and return its ResultGrid (None: already finished)."""
    check_settings(s)
    local = not experiment.is_uri(s.storage_path)
    exp_path = Path(s.experiment_path)
    replace = False
    if local:
        replace = experiment.check_experiment_dir(exp_path, resume=resume, overwrite=overwrite)
        if resume and finished_trials(s.experiment_path) >= s.num_samples:
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
        experiment.check_writable(exp_path)
    if s.optuna_storage and not resume:
        check_optuna_storage(s.optuna_storage)
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    # One snapshot per checkpointing epoch is intended (it is what makes a resume lose
    # nothing); Ray's warning about it would only clutter the progress lines.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # Ray starts (or is reached) and shows it can run a trial before anything is written.
    started = connect_ray(s.address, verbose)
    try:
        check_trial_fits(s.resources)
    except InputError:
        if started:
            import ray

            ray.shutdown()
        raise
    # Every check has passed: only now is anything on disk replaced or created.
    if replace:
        experiment.remove_experiment(exp_path)
    if local and not resume:
        experiment.write_settings(exp_path, s.to_json())
    from ray import tune

    began = time.monotonic()
    if resume:
        if not tune.Tuner.can_restore(s.experiment_path):
            raise InputError(f"--resume {s.name}: {s.experiment_path} cannot be restored")
        tuner = tune.Tuner.restore(
            s.experiment_path, _trainable(s), resume_unfinished=True, restart_errored=True
        )
    else:
        tuner = build_tuner(s)
    results = tuner.fit()
    if resume:
        close_orphaned_optuna_trials(s, results)
    print(f"search finished in {time.monotonic() - began:.0f}s", file=sys.stderr)
    return results


def close_orphaned_optuna_trials(s: SearchSettings, results) -> int:
    """Mark FAIL the Optuna trials left RUNNING by a killed driver.

    Optuna records a sample when it is drawn; Ray Tune records the trial in its experiment state
    a few seconds later. A driver killed in between leaves a study trial that no Ray trial will
    ever finish. Once every Ray trial has ended, such a trial can only be one of those.
    """
    if results.num_errors or results.num_terminated < s.num_samples:
        return 0
    study = optuna.load_study(study_name=s.name, storage=s.optuna_url())
    orphans = [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]
    for t in orphans:
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)
    if orphans:
        print(
            f"marked {len(orphans)} Optuna trial(s) FAIL: sampled just before the driver was "
            "killed, never run",
            file=sys.stderr,
        )
    return len(orphans)
