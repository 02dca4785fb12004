"""Read, validate and write the feature-dir format (README, "Data").

A feature dir holds `features.npy` (N, n_mels, frames) float16/float32, `labels_multilabel.npy`
(N, G) of 0/1, `genres.json` (G names) and optionally `split.npy` (N,) of 0/1/2.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from genretune.data.dataset import SPLIT_NAMES, Dataset
from genretune.errors import InputError, first_line

FEATURES_FILE = "features.npy"
LABELS_FILE = "labels_multilabel.npy"
GENRES_FILE = "genres.json"
SPLIT_FILE = "split.npy"
MIN_INPUT_SIZE = 16
# Rows per chunk when scanning a memory-mapped feature array for NaN/Inf: bounded memory.
_SCAN_ROWS = 512
# Log-mel spectrograms in dB lie within about +-150, standardised features within tens; a value
# beyond this is not a spectrogram, and squares in the first layers overflow float32.
MAX_FEATURE_MAGNITUDE = 1e6


def _load_npy(path: Path, mmap: bool) -> np.ndarray:
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        reason = first_line(exc)
        raise InputError(f"{path}: not a readable .npy array ({reason})") from None


def read_genres(path: Path, n_genres: int | None = None) -> tuple[str, ...]:
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        genres = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(genres, list) or not all(isinstance(g, str) and g for g in genres):
        raise InputError(f"{path}: must be a JSON list of non-empty genre names")
    if len(set(genres)) != len(genres):
        raise InputError(f"{path}: genre names must be unique")
    if n_genres is not None and len(genres) != n_genres:
        raise InputError(
            f"{path}: lists {len(genres)} genres but the labels have {n_genres} columns"
        )
    return tuple(genres)


def _check_features(path: Path, features: np.ndarray) -> None:
    if features.ndim != 3:
        raise InputError(
            f"{path}: features must have rank 3 (N, n_mels, frames), got shape {features.shape}"
        )
    if features.dtype not in (np.float16, np.float32):
        raise InputError(f"{path}: features must be float16 or float32, got {features.dtype}")
    if features.shape[0] == 0:
        raise InputError(f"{path}: the dataset is empty (0 tracks)")
    n_mels, frames = features.shape[1:]
    if n_mels < MIN_INPUT_SIZE or frames < MIN_INPUT_SIZE:
        raise InputError(
            f"{path}: each input must be at least {MIN_INPUT_SIZE}x{MIN_INPUT_SIZE} "
            f"(n_mels x frames), got {n_mels}x{frames}"
        )
    for start in range(0, features.shape[0], _SCAN_ROWS):
        chunk = np.asarray(features[start : start + _SCAN_ROWS])
        if not np.isfinite(chunk).all():
            row = start + int(np.flatnonzero(~np.isfinite(chunk).reshape(len(chunk), -1).all(1))[0])
            raise InputError(f"{path}: features contain NaN or Inf (first at track {row})")
        if chunk.dtype == np.float16:  # finite float16 values cannot reach the bound
            continue
        big = np.abs(chunk.reshape(len(chunk), -1)).max(axis=1) > MAX_FEATURE_MAGNITUDE
        if big.any():
            row = start + int(np.flatnonzero(big)[0])
            raise InputError(
                f"{path}: features reach {float(np.abs(chunk[row - start]).max()):.3g} (track "
                f"{row}); values beyond {MAX_FEATURE_MAGNITUDE:.0e} overflow training: rescale "
                "them (log-mels in dB, or standardised)"
            )


def _check_labels(path: Path, labels: np.ndarray, n_tracks: int) -> np.ndarray:
    if labels.ndim != 2:
        raise InputError(f"{path}: labels must have rank 2 (N, G), got shape {labels.shape}")
    if labels.shape[0] != n_tracks:
        raise InputError(
            f"{path}: has {labels.shape[0]} rows but {FEATURES_FILE} has {n_tracks} tracks"
        )
    if labels.shape[1] == 0:
        raise InputError(f"{path}: labels have 0 genre columns")
    if labels.dtype.kind not in "biuf":
        raise InputError(f"{path}: labels must be numeric 0/1, got dtype {labels.dtype}")
    if not np.isin(labels, (0, 1)).all():
        raise InputError(f"{path}: labels must contain only 0 and 1")
    return labels.astype(np.uint8)


def check_split(path: Path | str, split: np.ndarray, n_tracks: int) -> np.ndarray:
    if split.ndim != 1 or split.shape[0] != n_tracks:
        raise InputError(f"{path}: split must have shape ({n_tracks},), got {split.shape}")
    if split.dtype.kind not in "biu" or not np.isin(split, (0, 1, 2)).all():
        raise InputError(f"{path}: split values must be 0 (train), 1 (val) or 2 (test)")
    split = split.astype(np.int8)
    for value, name in enumerate(SPLIT_NAMES):
        if not (split == value).any():
            raise InputError(f"{path}: the {name} split ({value}) is empty")
    return split


def load_feature_dir(
    directory: str | Path, labels_file: str = LABELS_FILE
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], np.ndarray | None]:
    """Validated (features memmap, labels, genres, split or None) of a feature dir."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise InputError(f"{directory}: a file, not a data directory (a feature dir)")
    if not directory.is_dir():
        raise InputError(f"{directory}: data directory not found")
    features_path = directory / FEATURES_FILE
    features = _load_npy(features_path, mmap=True)
    _check_features(features_path, features)
    labels_path = directory / labels_file
    labels = _check_labels(labels_path, _load_npy(labels_path, mmap=False), features.shape[0])
    genres = read_genres(directory / GENRES_FILE, labels.shape[1])
    split = None
    split_path = directory / SPLIT_FILE
    if split_path.exists():
        split = check_split(split_path, _load_npy(split_path, mmap=False), features.shape[0])
    return features, labels, genres, split


def write_feature_dir(
    directory: str | Path,
    features: np.ndarray,
    labels: np.ndarray,
    genres: tuple[str, ...] | list[str],
    split: np.ndarray | None = None,
) -> Path:
    """Write a feature dir atomically: a reader sees the complete dir or none at all."""
    directory = Path(directory)
    tmp = directory.with_name(f".{directory.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    np.save(tmp / FEATURES_FILE, features)
    np.save(tmp / LABELS_FILE, labels.astype(np.uint8))
    (tmp / GENRES_FILE).write_text(json.dumps(list(genres), indent=1), encoding="utf-8")
    if split is not None:
        np.save(tmp / SPLIT_FILE, split.astype(np.int8))
    try:
        os.replace(tmp, directory)
    except OSError:
        # Another process finished the same directory first; theirs is equally valid.
        shutil.rmtree(tmp, ignore_errors=True)
        if not directory.is_dir():
            raise
    return directory


def as_dataset(directory: Path, labels_file: str, split: np.ndarray, source: str) -> Dataset:
    features, labels, genres, _ = load_feature_dir(directory, labels_file)
    return Dataset(features=features, labels=labels, genres=genres, split=split, source=source)
