"""Turn a DataConfig into a Dataset: the synthetic source or a feature dir on disk."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genretune.data.dataset import Dataset
from genretune.data.feature_dir import LABELS_FILE, check_split, load_feature_dir
from genretune.data.splits import stratified_split
from genretune.data.synthetic import SyntheticSpec, ensure_synthetic_dir, synthetic_dir_ready
from genretune.errors import BadValue, InputError

SYNTHETIC = "synthetic"


CACHE_VARIABLE = "GENRETUNE_CACHE_DIR"


def cache_root() -> Path:
    """Where generated datasets and computed splits are cached (GENRETUNE_CACHE_DIR overrides)."""
    configured = os.environ.get(CACHE_VARIABLE)
    return Path(configured) if configured else Path.home() / ".cache" / "genretune"


def directory_problem(path: Path) -> tuple[Path, str] | None:
    """Why files cannot be written under `path` (created if missing), or None: the nearest part
    of it that exists must be a writable directory. Returns (that part, what is wrong)."""
    existing = Path(path)
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return existing, "not a directory"
    if not os.access(
        existing, os.W_OK | os.X_OK, effective_ids=os.access in os.supports_effective_ids
    ):
        return existing, "not writable"
    return None


def variable_error(
    variable: str, value: str | Path, problem: tuple[Path, str], why: str
) -> InputError:
    """One line naming the environment variable whose directory cannot be used."""
    where, what = problem
    detail = what if str(where) == str(value) else f"{where} is {what}"
    return InputError(f"{variable} {value}: {detail} ({why})")


def check_cache_writable() -> Path:
    """The cache root, checked before anything is written there: an unusable one is one line
    naming the variable that placed it (GENRETUNE_CACHE_DIR, else HOME)."""
    root = cache_root()
    problem = directory_problem(root)
    if problem is None:
        return root
    if os.environ.get(CACHE_VARIABLE):
        raise variable_error(
            CACHE_VARIABLE,
            root,
            problem,
            "generated datasets are cached there: set it to a writable directory",
        )
    home = Path.home()
    raise variable_error(
        "HOME",
        home,
        directory_problem(home) or problem,
        "generated datasets are cached in "
        f"$HOME/.cache/genretune: set HOME or {CACHE_VARIABLE} to a writable directory",
    )


@dataclass(frozen=True)
class DataConfig:
    """Which data a run uses. `source` is "synthetic" or the path of a feature dir."""

    source: str = SYNTHETIC
    synthetic_scale: float = 0.1
    data_seed: int = 0
    n_mels: int = 32
    frames: int = 64
    labels_file: str = LABELS_FILE
    num_genres: int | None = None

    def __post_init__(self) -> None:
        if self.source == SYNTHETIC:
            if not 0 < self.synthetic_scale <= 10:
                raise BadValue("synthetic_scale", " must be in (0, 10]")
            for key in ("n_mels", "frames"):
                if getattr(self, key) < 16:
                    raise BadValue(key, " must be at least 16")
        if self.num_genres is not None and self.num_genres < 1:
            raise BadValue("num_genres", " must be >= 1")
        if Path(self.labels_file).name != self.labels_file:
            raise BadValue("labels_file", f" {self.labels_file}: must be a file name in the dir")

    @property
    def is_synthetic(self) -> bool:
        return self.source == SYNTHETIC

    def synthetic_spec(self) -> SyntheticSpec:
        return SyntheticSpec(
            scale=self.synthetic_scale, seed=self.data_seed, n_mels=self.n_mels, frames=self.frames
        )

    def describe(self) -> str:
        if self.is_synthetic:
            return f"synthetic (scale {self.synthetic_scale:g}, seed {self.data_seed})"
        return str(self.source)


def _cached_split(labels: np.ndarray, seed: int) -> np.ndarray:
    """Split for a feature dir without split.npy, computed once per label matrix and seed."""
    digest = hashlib.sha256(labels.tobytes() + str(labels.shape).encode()).hexdigest()[:16]
    path = cache_root() / "splits" / f"{digest}-seed{seed}.npy"
    if path.is_file():
        return check_split(path, np.load(path, allow_pickle=False), labels.shape[0])
    split = stratified_split(labels, seed=seed)
    check_cache_writable()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npy")
    np.save(tmp, split)
    os.replace(tmp, path)
    return split


def resolve_dir(config: DataConfig) -> Path:
    """The feature dir behind `config` (generating the synthetic one if needed)."""
    if config.is_synthetic:
        spec = config.synthetic_spec()
        root = cache_root()
        if not synthetic_dir_ready(spec, root):
            root = check_cache_writable()
        return ensure_synthetic_dir(spec, root)
    return Path(config.source).expanduser()


def load_dataset(config: DataConfig) -> Dataset:
    directory = resolve_dir(config)
    features, labels, genres, split = load_feature_dir(directory, config.labels_file)
    if config.num_genres is not None and config.num_genres != labels.shape[1]:
        raise InputError(
            f"--num-genres {config.num_genres} does not match {directory / config.labels_file}, "
            f"which has {labels.shape[1]} genre columns"
        )
    if split is None:
        if labels.shape[0] < 3:
            raise InputError(f"{directory}: need at least 3 tracks for a train/val/test split")
        split = _cached_split(labels, config.data_seed)
    return Dataset(
        features=features,
        labels=labels,
        genres=genres,
        split=split,
        source=config.describe(),
    )
