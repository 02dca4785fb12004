"""What a search is: its settings (saved in the experiment dir, read back by --resume, results
and export), and the names of its options."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna.distributions as od

from genretune.data import InputError
from genretune.model.config import TrainConfig, config_from_flat
from genretune.results import experiment_dir
from genretune.search.space import Space

DECISION_SPACE, DECISION_TUNED = "space", "tuned"
SAMPLERS = ("tpe", "random", "nsga2", "gp")
SCHEDULERS = ("asha", "fifo")
# Keys Ray Tune adds to every reported result.
RAY_METRICS = ("training_iteration", "time_total_s", "time_this_iter_s")
# How Optuna hears of a trial cut before its end (by ASHA or the budget).
CUT_AS_COMPLETE, CUT_AS_PRUNED = "complete", "pruned"
CUT_TRIALS_AS = (CUT_AS_COMPLETE, CUT_AS_PRUNED)


# TPE's random start-up trials (the baseline counts as one): 3 won on the search simulator at
# 90-300 trial-epochs (Optuna's own default is 10, most of such a search).
TPE_STARTUP_TRIALS = 3
# Draws around the baseline: standard deviation as a share of each parameter's range.
BASELINE_SPREAD = 0.15


def _saved_as(key: str, encode, decode) -> dict[str, Any]:
    """Field metadata: the settings file keeps this field under `key`, converted both ways."""
    return {"key": key, "encode": encode, "decode": decode}


# A field with this metadata is not saved: it depends on where the experiment is now.
NOT_SAVED = {"saved": False}


@dataclass(frozen=True)
class Resources:
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_concurrent: int | None = None


@dataclass(frozen=True)
class SearchSettings:
    """Everything a search was started with. The settings file (genretune_search.json) is this
    dataclass field by field (`to_json` / `settings_from_json`, both derived from the fields),
    so a new field is saved and read back by --resume without further code."""

    name: str = field(metadata=NOT_SAVED)  # the experiment directory's name, where it is now
    storage_path: str = field(metadata=NOT_SAVED)  # the directory holding it, where it is now
    profile: str
    base: TrainConfig = field(  # every non-searched value, including the data source
        metadata=_saved_as("base_config", TrainConfig.to_flat, config_from_flat)
    )
    space: Space = field(
        metadata=_saved_as(
            "space",
            lambda space: {k: od.distribution_to_json(v) for k, v in space.items()},
            lambda saved: {k: od.json_to_distribution(v) for k, v in saved.items()},
        )
    )
    baseline: dict[str, Any]  # the first trial ({} = none)
    metric: str
    mode: str
    num_samples: int
    grace_period: int
    reduction_factor: int
    seed: int
    decision: str = DECISION_SPACE
    resources: Resources = field(
        default_factory=Resources,
        metadata=_saved_as("resources", vars, lambda saved: Resources(**saved)),
    )
    max_failures: int = 2
    address: str | None = None  # the Ray cluster it was launched on (None: a local Ray)
    data_on_workers: bool = False
    optuna_storage: str | None = None  # a user's RDB URL; None: optuna.db in the experiment
    study_name: str = ""  # the Optuna study's name: the experiment's first name ("" = name)
    progress_interval: float = 30.0
    mlflow_uri: str | None = None
    sampler: str = "tpe"
    scheduler: str = "asha"
    budget_epochs: int | None = None
    tpe_startup_trials: int = TPE_STARTUP_TRIALS
    # Optuna 5's TPESampler defaults to multivariate TPE with a constant liar; on the search
    # simulator the independent TPE without it found better configurations (benchmarks/).
    tpe_multivariate: bool = False
    tpe_constant_liar: bool = False
    baseline_draws: tuple[dict[str, Any], ...] = field(  # trials drawn around the baseline
        default=(), metadata=_saved_as("baseline_draws", list, tuple)
    )
    cut_trials_as: str = CUT_AS_COMPLETE
    late_cut: bool = False  # ASHA ranks a trial again at a rung it reached alone
    ramp_up: int = 0  # trials running at first, one more per ended trial (0 = all at once)
    # Several objectives (metric, mode), the first one first: a multi-objective search.
    objectives: tuple[tuple[str, str], ...] = field(
        default=(),
        metadata=_saved_as(
            "objectives",
            lambda objectives: [list(o) for o in objectives],
            lambda saved: tuple(tuple(o) for o in saved),
        ),
    )

    @property
    def initial_points(self) -> list[dict[str, Any]]:
        """What the searcher evaluates first, in order: the baseline and the draws around it."""
        return [self.baseline, *self.baseline_draws] if self.baseline else []

    @property
    def experiment_path(self) -> str:
        return f"{self.storage_path.rstrip('/')}/{self.name}"

    @property
    def study(self) -> str:
        """The Optuna study's name (an experiment renamed by a move keeps its study)."""
        return self.study_name or self.name

    def optuna_url(self) -> str:
        if self.optuna_storage:
            return self.optuna_storage
        return f"sqlite:///{Path(self.experiment_path) / experiment_dir.OPTUNA_DB}"

    def to_json(self) -> dict[str, Any]:
        """The settings file's content: every saved field, and the schema version."""
        payload: dict[str, Any] = {"schema_version": experiment_dir.SETTINGS_SCHEMA_VERSION}
        for f in dataclasses.fields(self):
            if f.metadata.get("saved", True):
                encode = f.metadata.get("encode", lambda value: value)
                payload[f.metadata.get("key", f.name)] = encode(getattr(self, f.name))
        payload["study_name"] = self.study
        return payload


# Settings files written before a field existed ran with these values (where they differ from
# the field's default): the older experiment resumes as it was started.
OLDER_FILE_VALUES = {
    # Before these were settings, searches ran Optuna's defaults.
    "tpe_multivariate": True,
    "tpe_constant_liar": True,
}


def _check_type(name: str, value: Any, hint: Any, file: str) -> None:
    """A hand-edited settings file with a value of the wrong type fails here, naming the key."""
    origin = typing.get_origin(hint)
    options = typing.get_args(hint) if origin in (typing.Union, types.UnionType) else (hint,)
    plain = [typing.get_origin(o) or o for o in options]
    if value is None and type(None) in plain:
        return
    for kind in plain:
        if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return
        if kind is int and isinstance(value, int) and not isinstance(value, bool):
            return
        if kind in (str, bool, dict) and isinstance(value, kind):
            return
        if kind is tuple and isinstance(value, tuple):
            return
        if kind not in (float, int, str, bool, dict, tuple, type(None)):
            return  # a dataclass or alias: its decoder checked it
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
    raise InputError(f"{file}: {name!r} is {shown}, not of type {hint}")


def settings_from_json(
    payload: dict[str, Any], name: str, storage_path: str, file: str = "settings", **overrides
) -> SearchSettings:
    """The settings saved in an experiment's settings file, for the experiment that is now at
    `storage_path`/`name` (it may have been copied or moved since it was written). `overrides`
    replace saved values (--resume's watching flags)."""
    version = payload.get("schema_version", 1)
    if not isinstance(version, int) or version > experiment_dir.SETTINGS_SCHEMA_VERSION:
        raise InputError(
            f"{file}: written by a newer genretune (settings schema {version!r}; this one reads "
            f"up to {experiment_dir.SETTINGS_SCHEMA_VERSION}): upgrade genretune to read it"
        )
    payload = dict(payload)
    if version == 1:
        payload = _from_version_1(payload)
    hints = typing.get_type_hints(SearchSettings)
    values: dict[str, Any] = {"name": name, "storage_path": storage_path}
    for f in dataclasses.fields(SearchSettings):
        if not f.metadata.get("saved", True) or f.name in overrides:
            continue
        key = f.metadata.get("key", f.name)
        if key in payload:
            try:
                value = f.metadata.get("decode", lambda saved: saved)(payload[key])
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise InputError(f"{file}: {key!r} is damaged ({exc})") from None
            _check_type(key, value, hints[f.name], file)
            values[f.name] = value
        elif f.name in OLDER_FILE_VALUES:
            values[f.name] = OLDER_FILE_VALUES[f.name]
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise InputError(f"{file}: not a complete genretune search settings file (no {key!r})")
    return SearchSettings(**values, **overrides)


def _from_version_1(payload: dict[str, Any]) -> dict[str, Any]:
    """Version 1 files (before the schema was versioned) named their absolute location: the
    experiment's own study is found where the experiment is now, not where it was."""
    if "baseline" not in payload and "seed_point" in payload:
        payload["baseline"] = payload["seed_point"]  # before the baseline was named so
    if payload.get("optuna_storage") == experiment_dir.first_location_study_url(payload):
        payload["optuna_storage"] = None
    return payload
