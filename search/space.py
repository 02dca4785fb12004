"""The search space: Optuna distributions over flat training-config keys.

Defaults cover the hand-tuned baseline's values. A space file (YAML or JSON) overrides or
removes any parameter:

    lr: {type: float, low: 1.0e-4, high: 3.0e-3, log: true}
    base_channels: {type: categorical, choices: [8, 16, 32]}
    min_samples_per_genre: {type: int, low: 0, high: 100}
    top_k: null          # remove from the space (the fixed flag value is used)
    weight_decay: 1.0e-4 # a fixed value for every trial
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import optuna.distributions as od
import yaml

from genretune.data import InputError, first_line
from genretune.data.numbers import finite_number
from genretune.model.config import FLAT_KEYS, INT_KEYS, OPTIONAL_KEYS
from genretune.search.profiles import BASELINE_MIN_SAMPLES, Profile
from genretune.search.unit_space import from_unit, to_unit

TOP_K_CHOICES = (None, 3, 5, 7, 10, 15, 20)
DECISION_KEYS = ("threshold", "top_k")
# Keys that pick the dataset: every trial must see the same data, so they are never searched.
UNSEARCHABLE = {
    "data",
    "synthetic_scale",
    "data_seed",
    "n_mels",
    "frames",
    "labels_file",
    "num_genres",
    "objective",
    "epochs",
}
SEARCHABLE = tuple(k for k in FLAT_KEYS if k not in UNSEARCHABLE)

Space = dict[str, od.BaseDistribution]


def default_space_for(profile: Profile, synthetic: bool) -> Space:
    """The space searched when no space file says otherwise. The profile's min-samples range is
    sized for its synthetic data; on a real dataset it is the full profile's, unscaled."""
    space = default_space(profile)
    if not synthetic:
        from genretune.search.profiles import get_profile

        space["min_samples_per_genre"] = default_space(get_profile("full"))["min_samples_per_genre"]
    return space


def default_space(profile: Profile) -> Space:
    scaled = profile.scaled_min_samples
    return {
        "min_samples_per_genre": od.IntDistribution(scaled(50), scaled(1000), log=True),
        "pos_weight_power": od.FloatDistribution(0.0, 1.0),
        "pos_weight_cap": od.FloatDistribution(1.0, 100.0, log=True),
        "base_channels": od.CategoricalDistribution(profile.base_channels),
        "lr": od.FloatDistribution(1e-4, 3e-3, log=True),
        "threshold": od.FloatDistribution(0.30, 0.80, step=0.05),
        "top_k": od.CategoricalDistribution(TOP_K_CHOICES),
    }


def baseline_config(profile: Profile) -> dict[str, Any]:
    """The hand-tuned baseline configuration (the predecessor log's final settings: genres
    with >= 300 tracks at the FMA dataset's size, square-root class weights capped at 50, the
    widest model, lr 5e-4, threshold 0.5, no top-K), scaled to the profile's data."""
    return {
        "min_samples_per_genre": profile.scaled_min_samples(BASELINE_MIN_SAMPLES),
        "pos_weight_power": 0.5,
        "pos_weight_cap": 50.0,
        "base_channels": max(profile.base_channels),
        "lr": 5e-4,
        "threshold": 0.5,
        "top_k": None,
    }


def profile_defaults(p: Profile) -> dict[str, Any]:
    """The flat config a profile trains with where no flag or search sets a value: its data,
    epochs and patience, and the baseline's training knobs (a parameter a space file or a flag
    takes out of the space keeps the baseline's value)."""
    return {
        "synthetic_scale": p.synthetic_scale,
        "n_mels": p.n_mels,
        "frames": p.frames,
        "epochs": p.epochs,
        "patience": p.patience,
        "batch_size": p.batch_size,
        **{k: v for k, v in baseline_config(p).items() if k not in DECISION_KEYS},
    }


def baseline_point(
    profile: Profile,
    space: Space,
    base: dict[str, Any],
    given: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The baseline as a point of `space` (the first trial evaluated).

    Every searched key gets a value: `given`'s (a user's --baseline file), else the hand-tuned
    baseline's, else the fixed config's (`base`), moved to the nearest value the space allows.
    """
    point = {**baseline_config(profile), **(given or {})}
    return {k: nearest(dist, point.get(k, base.get(k))) for k, dist in space.items()}


def draws_around(space: Space, centre: dict[str, Any], n: int, seed: int, spread: float):
    """`n` points drawn around `centre`: each numeric parameter normally around the centre's
    position on its own scale (log where the space is log; `spread` is the standard deviation
    as a share of the range, reflected at the bounds), each categorical one kept with
    probability 1/2, else drawn uniformly. Deterministic per seed."""
    rng = np.random.default_rng([seed, 2_462_109])  # a stream of its own, apart from the sampler's
    points = []
    for _ in range(n):
        point = {}
        for key, dist in space.items():
            if isinstance(dist, od.CategoricalDistribution):
                keep = rng.random() < 0.5
                point[key] = centre[key] if keep else dist.choices[rng.integers(len(dist.choices))]
            else:
                u = to_unit(dist, centre[key]) + rng.normal(0.0, spread)
                u = abs(u) if u < 0 else (2 - u if u > 1 else u)  # reflect into [0, 1]
                point[key] = nearest(dist, from_unit(dist, min(max(u, 0.0), 1 - 1e-12)))
        points.append(point)
    return points


def contains(dist: od.BaseDistribution, value: Any) -> bool:
    if isinstance(dist, od.CategoricalDistribution):
        return value in dist.choices
    return value is not None and dist.low <= value <= dist.high


def nearest(dist: od.BaseDistribution, value: Any) -> Any:
    """`value` if the distribution contains it, else the closest value it does."""
    if contains(dist, value):
        return value
    if isinstance(dist, od.CategoricalDistribution):
        numbers = [c for c in dist.choices if isinstance(c, (int, float)) and c is not None]
        if isinstance(value, (int, float)) and numbers:
            return min(numbers, key=lambda c: abs(c - value))
        return dist.choices[0]
    if value is None:
        # null means unbounded where a config allows it (no cap, no top-K, every genre): the
        # space's loosest value.
        return dist.high
    clipped = min(max(value, dist.low), dist.high)
    step = getattr(dist, "step", None)
    if step:
        clipped = dist.low + round((clipped - dist.low) / step) * step
        clipped = min(clipped, dist.high)
    return int(round(clipped)) if isinstance(dist, od.IntDistribution) else float(clipped)


def _number(where: str, value: Any) -> float:
    if finite_number(value) is None:
        raise InputError(f"{where} must be a finite number, got {value!r}")
    return value


def parse_distribution(name: str, spec: dict[str, Any], where: str) -> od.BaseDistribution:
    kind = spec.get("type")
    allowed = {
        "float": {"type", "low", "high", "log", "step"},
        "int": {"type", "low", "high", "log", "step"},
        "categorical": {"type", "choices"},
    }
    if kind not in allowed:
        raise InputError(f"{where}: type must be float, int or categorical, got {kind!r}")
    extra = sorted(set(spec) - allowed[kind])
    if extra:
        raise InputError(f"{where}: unknown field(s) {', '.join(extra)}")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise InputError(f"{where}: choices must be a non-empty list")
        if not all(c is None or isinstance(c, (bool, int, float, str)) for c in choices):
            raise InputError(f"{where}: choices must be numbers, strings or null")
        if name in INT_KEYS:
            bad = [
                c for c in choices if not _is_int(c) and not (c is None and name in OPTIONAL_KEYS)
            ]
            if bad:
                raise InputError(f"{where}: {name} takes integers, got choice {bad[0]!r}")
        return od.CategoricalDistribution(choices)
    if "low" not in spec or "high" not in spec:
        raise InputError(f"{where}: needs low and high")
    low, high = _number(f"{where}.low", spec["low"]), _number(f"{where}.high", spec["high"])
    log, step = spec.get("log", False), spec.get("step")
    if not isinstance(log, bool):
        raise InputError(f"{where}.log must be true or false")
    if low > high:
        raise InputError(f"{where}: low ({low}) > high ({high})")
    if log and low <= 0:
        raise InputError(f"{where}: a log scale needs low > 0")
    if step is not None:
        step = _number(f"{where}.step", step)
        if step <= 0 or log:
            raise InputError(f"{where}: step must be > 0 and cannot be combined with log")
    if kind == "float" and name in INT_KEYS:
        raise InputError(f"{where}: {name} takes integers: use type int (or categorical)")
    if step is not None:
        # Optuna would silently move `high` down to the last step; the user meant the range.
        steps = (high - low) / step
        if abs(steps - round(steps)) > 1e-9 * max(1.0, abs(steps)):
            raise InputError(f"{where}: step {step:g} does not divide the range {low:g}..{high:g}")
    if kind == "int":
        if any(float(v) != int(v) for v in (low, high) + ((step,) if step else ())):
            raise InputError(f"{where}: int bounds and step must be integers")
        return od.IntDistribution(int(low), int(high), log=log, step=int(step or 1))
    return od.FloatDistribution(float(low), float(high), log=log, step=step)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def read_space_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise InputError(f"--space {path}: file not found")
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        payload = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        kind = "JSON" if path.suffix == ".json" else "YAML"
        raise InputError(f"--space {path}: not valid {kind} ({first_line(exc)})") from None
    if not isinstance(payload, dict):
        raise InputError(f"--space {path}: must be a mapping of parameter names")
    return payload


def read_baseline_file(path: Path) -> dict[str, Any]:
    """A baseline configuration: a mapping of config keys, or a `genretune export` file (its
    `config`). Keys the search does not search are ignored; unknown ones are refused."""
    if not path.is_file():
        raise InputError(f"--baseline {path}: file not found")
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        payload = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        kind = "JSON" if path.suffix == ".json" else "YAML"
        raise InputError(f"--baseline {path}: not valid {kind} ({first_line(exc)})") from None
    if isinstance(payload, dict) and isinstance(payload.get("config"), dict):
        payload = payload["config"]
    if not isinstance(payload, dict) or not payload:
        raise InputError(f"--baseline {path}: must be a mapping of parameter names to values")
    unknown = sorted(set(payload) - set(FLAT_KEYS))
    if unknown:
        raise InputError(f"--baseline {path}: unknown parameter(s) {', '.join(map(str, unknown))}")
    from genretune.model.config import config_from_flat

    try:
        # Each value's type and domain, as `genretune train` checks; 16.0 becomes 16.
        flat = config_from_flat(payload).to_flat()
    except InputError as exc:
        raise InputError(f"--baseline {path}: {exc}") from None
    return {k: flat[k] for k in payload}


def moved_baseline_values(given: dict[str, Any], baseline: dict[str, Any]) -> list[str]:
    """`key value -> used` for each searched value of a --baseline file that the space does
    not hold (the baseline trial runs the nearest value it does)."""
    moved = [k for k in baseline if k in given and given[k] != baseline[k]]
    return [f"{k} {given[k]!r} -> {baseline[k]!r}" for k in moved]


def apply_space_file(
    space: Space, path: Path, entries: dict[str, Any]
) -> tuple[Space, dict[str, Any]]:
    """(space, fixed values) after a user's space file (`entries`, read from `path` by
    read_space_file); every entry is checked by name."""
    space, fixed = dict(space), {}
    for name, spec in entries.items():
        where = f"--space {path}: {name}"
        if name not in SEARCHABLE:
            raise InputError(
                f"{where}: unknown or unsearchable parameter (searchable: {', '.join(SEARCHABLE)})"
            )
        if spec is None:
            space.pop(name, None)
        elif isinstance(spec, dict):
            space[name] = parse_distribution(name, spec, where)
            fixed.pop(name, None)
        else:
            space.pop(name, None)
            fixed[name] = spec
    return space, fixed
