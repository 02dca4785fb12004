"""Frozen configs, one per area, and the one conversion from a flat dict (a Tune config, a
config file, CLI flags) into them. Unknown keys and bad values are rejected by name."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from genretune.data import DataConfig, InputError
from genretune.errors import BadValue

# Validation metrics the training loop can keep its best epoch (and apply patience) by.
OBJECTIVES = ("val_f1", "tuned_val_f1", "val_f1_macro")


@dataclass(frozen=True)
class FilterConfig:
    min_samples_per_genre: int = 0
    max_genres: int | None = None


@dataclass(frozen=True)
class LossConfig:
    pos_weight_power: float = 1.0
    pos_weight_cap: float | None = None


@dataclass(frozen=True)
class ModelConfig:
    base_channels: int = 16
    dropout: float = 0.3


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 5e-4
    weight_decay: float = 1e-5
    batch_size: int = 32
    epochs: int = 20
    patience: int = 5


@dataclass(frozen=True)
class DecisionConfig:
    """The decision rule applied to probabilities: threshold, top-K, or both."""

    threshold: float | None = 0.5
    top_k: int | None = None


@dataclass(frozen=True)
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    filter: FilterConfig = field(default_factory=FilterConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    decision: DecisionConfig = field(default_factory=DecisionConfig)
    seed: int = 0
    objective: str = "val_f1"

    def to_flat(self) -> dict[str, Any]:
        flat: dict[str, Any] = {}
        for section in _SECTIONS:
            flat.update(asdict(getattr(self, section)))
        flat["data"] = flat.pop("source")
        flat["seed"] = self.seed
        flat["objective"] = self.objective
        return flat


_SECTIONS = ("data", "filter", "loss", "model", "optim", "decision")
_SECTION_TYPES = {
    "data": DataConfig,
    "filter": FilterConfig,
    "loss": LossConfig,
    "model": ModelConfig,
    "optim": OptimConfig,
    "decision": DecisionConfig,
}
# The flat key "data" is DataConfig.source: it reads as the --data flag.
_FLAT_TO_FIELD = {"data": ("data", "source")}
for _section, _cls in _SECTION_TYPES.items():
    for _f in fields(_cls):
        if _f.name != "source":
            _FLAT_TO_FIELD[_f.name] = (_section, _f.name)
FLAT_KEYS = (*_FLAT_TO_FIELD, "seed", "objective")

# Seeds feed NumPy's and torch's generators (32-bit); other counts get bounds far beyond any
# real setting, so a typo is refused instead of allocating without end.
_INT_MAX = 2**31 - 1
# (The lower bounds of the others are checked, with their reasons, in _check_ranges.)
_INT_RANGES = {
    "seed": (0, 2**32 - 1),
    "data_seed": (0, 2**32 - 1),
    "epochs": (None, 100_000),
    "patience": (None, 100_000),
    "batch_size": (None, 65_536),
    "base_channels": (None, 4096),
    "n_mels": (None, 4096),
    "frames": (None, 65_536),
    "num_genres": (None, 100_000),
    "max_genres": (None, 100_000),
    "top_k": (None, 100_000),
}


def _key_types() -> dict[str, str]:
    """Flat key -> its annotation ("int", "float | None", ...), from the dataclasses: a field
    added to a config is a key with its type, nothing else to list."""
    types = {"seed": "int", "objective": "str"}
    for flat, (section, name) in _FLAT_TO_FIELD.items():
        (field_,) = [f for f in fields(_SECTION_TYPES[section]) if f.name == name]
        types[flat] = str(field_.type)
    return types


_KEY_TYPES = _key_types()
INT_KEYS = {k for k, t in _KEY_TYPES.items() if t.split(" | ")[0] == "int"}
FLOAT_KEYS = {k for k, t in _KEY_TYPES.items() if t.split(" | ")[0] == "float"}
OPTIONAL_KEYS = {k for k, t in _KEY_TYPES.items() if t.endswith("| None")}


def _coerce(key: str, value: Any, origin: str) -> Any:
    def bad(problem: str) -> BadValue:
        return BadValue(key, problem, origin)

    if value is None:
        if key in OPTIONAL_KEYS:
            return None
        raise bad(" must not be null")
    if key in INT_KEYS:
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or (isinstance(value, float) and not math.isfinite(value))
            or value != int(value)
        ):
            raise bad(f" must be an integer, got {value!r}")
        low, high = _INT_RANGES.get(key, (None, _INT_MAX))
        if value > high or (low is not None and value < low):
            rule = f"in [{low}, {high}]" if low is not None else f"<= {high}"
            raise bad(f" must be {rule}, got {value!r}")
        return int(value)
    if key in FLOAT_KEYS:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad(f" must be a number, got {value!r}")
        if not math.isfinite(value):
            raise bad(f" must be finite, got {value!r}")
        return float(value)
    if not isinstance(value, str) or not value:
        raise bad(f" must be a non-empty string, got {value!r}")
    return value


def _check_ranges(cfg: TrainConfig, origin: str) -> None:
    o, f, loss, m, d = cfg.optim, cfg.filter, cfg.loss, cfg.model, cfg.decision
    checks = [
        (o.epochs >= 1, "epochs", "must be >= 1"),
        (o.batch_size >= 1, "batch_size", "must be >= 1"),
        (o.lr > 0, "lr", "must be > 0"),
        (o.weight_decay >= 0, "weight_decay", "must be >= 0"),
        (o.patience >= 1, "patience", "must be >= 1"),
        (f.min_samples_per_genre >= 0, "min_samples_per_genre", "must be >= 0"),
        (f.max_genres is None or f.max_genres >= 1, "max_genres", "must be >= 1"),
        (loss.pos_weight_power >= 0, "pos_weight_power", "must be >= 0"),
        (loss.pos_weight_cap is None or loss.pos_weight_cap > 0, "pos_weight_cap", "must be > 0"),
        (m.base_channels >= 1, "base_channels", "must be >= 1"),
        (0 <= m.dropout < 1, "dropout", "must be in [0, 1)"),
        (d.threshold is None or 0 <= d.threshold <= 1, "threshold", "must be in [0, 1]"),
        (d.top_k is None or d.top_k >= 1, "top_k", "must be >= 1"),
        (d.threshold is not None or d.top_k is not None, "threshold", "or top-K must be set"),
        (cfg.objective in OBJECTIVES, "objective", f"must be one of {', '.join(OBJECTIVES)}"),
    ]
    for ok, key, rule in checks:
        if not ok:
            raise BadValue(key, " " + rule, origin)


def config_from_flat(
    flat: dict[str, Any],
    origin: str = "",
    base: TrainConfig | None = None,
) -> TrainConfig:
    """A validated TrainConfig from flat keys laid over `base` (defaults when None).

    `origin` names where the dict came from (a config file) for error messages. A bad value
    is a BadValue naming its key (the CLI names the flag it came from instead).
    """
    unknown = sorted(set(flat) - set(FLAT_KEYS))
    if unknown:
        prefix = f"{origin}: " if origin else ""
        raise InputError(f"{prefix}unknown config key(s): {', '.join(unknown)}")
    merged = (base or TrainConfig()).to_flat()
    merged.update({k: _coerce(k, v, origin) for k, v in flat.items()})
    sections: dict[str, dict[str, Any]] = {s: {} for s in _SECTIONS}
    for key, value in merged.items():
        if key in _FLAT_TO_FIELD:
            section, name = _FLAT_TO_FIELD[key]
            sections[section][name] = value
    try:
        cfg = TrainConfig(
            **{s: _SECTION_TYPES[s](**sections[s]) for s in _SECTIONS},
            seed=merged["seed"],
            objective=merged["objective"],
        )
    except BadValue as exc:
        raise (exc.read_from(origin) if origin else exc) from None
    except InputError as exc:
        raise InputError(f"{origin}: {exc}" if origin else str(exc)) from None
    _check_ranges(cfg, origin)
    return cfg
