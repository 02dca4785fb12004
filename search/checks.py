"""Everything about a search that can be wrong, checked before Ray starts and before anything
is written: the settings, the data against the space, MLflow and Optuna storage."""

from __future__ import annotations

import math
import os
import sys
from dataclasses import replace

import optuna.distributions as od

from genretune.data import InputError, first_line
from genretune.model.config import config_from_flat
from genretune.search import experiment_writer
from genretune.search.settings import (
    CUT_TRIALS_AS,
    DECISION_TUNED,
    RAY_METRICS,
    SAMPLERS,
    SCHEDULERS,
    SearchSettings,
)
from genretune.search.space import DECISION_KEYS
from genretune.search.study_storage import open_rdb_storage


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
        first = first_line(exc)
        raise InputError(f"--mlflow-uri {uri}: {first[:300]}") from None
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)


def check_settings(s: SearchSettings) -> None:
    """Everything that can be wrong before Ray starts."""
    r = s.resources
    if not math.isfinite(r.cpus_per_trial) or r.cpus_per_trial <= 0:
        raise InputError("--cpus-per-trial must be a number > 0")
    if not math.isfinite(r.gpus_per_trial) or not 0 <= r.gpus_per_trial <= 1:
        raise InputError(
            f"--gpus-per-trial {r.gpus_per_trial:g}: must be in [0, 1] (a trial trains on one "
            "device; a fraction packs several trials on one GPU)"
        )
    if r.gpus_per_trial > 0 and not s.address:
        import torch

        if torch.version.cuda is None:
            raise InputError(
                f"--gpus-per-trial {r.gpus_per_trial:g}: the installed torch "
                f"{torch.__version__} is a CPU build; install a CUDA build (make setup "
                "TORCH_SPEC=torch) or run with --gpus-per-trial 0"
            )
    if not math.isfinite(s.progress_interval) or s.progress_interval <= 0:
        raise InputError("--progress-interval must be a number of seconds > 0")
    if r.max_concurrent is not None and r.max_concurrent < 1:
        raise InputError("--max-concurrent must be >= 1")
    if s.ramp_up < 0:
        raise InputError("--ramp-up must be >= 0 (0: every worker from the start)")
    if s.num_samples < 1:
        raise InputError("--num-samples must be >= 1")
    if s.grace_period < 1 or s.grace_period > s.base.optim.epochs:
        raise InputError(f"--grace-period must be in [1, epochs={s.base.optim.epochs}]")
    if s.reduction_factor < 2:
        raise InputError("--reduction-factor must be >= 2")
    if s.mode not in ("max", "min"):
        raise InputError("--mode must be max or min")
    from genretune.model.metric_keys import REPORTED_METRICS

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
    if s.late_cut and (s.scheduler != "asha" or s.objectives):
        raise InputError("--late-cut: only with ASHA (--scheduler asha) and one objective")
    if s.budget_epochs is not None and s.budget_epochs < 1:
        raise InputError("--budget-epochs must be >= 1")
    if s.decision == DECISION_TUNED and any(k in s.space for k in DECISION_KEYS):
        raise InputError("--decision tuned: threshold/top_k cannot also be searched")
    if s.mlflow_uri:
        check_mlflow_uri(s.mlflow_uri)
    if experiment_writer.is_uri(s.storage_path) and not s.optuna_storage:
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
    from genretune.search.space import default_space_for, nearest

    defaults = default_space_for(get_profile(s.profile), s.base.data.is_synthetic)
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


def check_optuna_storage(url: str) -> None:
    """The study database opens (its driver is installed, it answers) before Ray starts."""
    try:
        open_rdb_storage(url)
    except Exception as exc:  # SQLAlchemy raises many types (no driver, bad URL, refused)
        first = first_line(exc)
        raise InputError(f"--optuna-storage {url}: cannot open it ({first[:200]})") from None
