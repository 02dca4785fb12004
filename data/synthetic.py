"""A deterministic, learnable-but-hard synthetic stand-in for the hand-run log's 70-genre FMA data.

Genre counts reproduce `seed_genres.csv`: at scale 1.0 every genre's label count is exactly the
CSV's (38,801 genre labels, top 6,316, bottom 50); at other scales each count scales
proportionally with a floor that keeps every genre present. Each track has one primary genre and
a minority also carry a related genre of the same family, so the label counts are shared between
primaries and secondaries (the track count is the label count less the secondaries).

Each "spectrogram" is a sum, over a track's genres, of a spectral envelope times a temporal
modulation, plus a coloured background and noise. Genres of one family (the Folk family, the Rock
family, the experimental family, ...) share their broad envelope and tempo range and differ only
in a narrow spectral peak and their exact tempo, so they are confusable; noise and per-track
jitter make perfect scores impossible.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from genretune.data.feature_dir import write_feature_dir
from genretune.data.splits import stratified_split
from genretune.errors import InputError

# Bump when the generator changes, so stale caches are never reused.
GENERATOR_VERSION = 1
_CHUNK = 2048


@dataclass(frozen=True)
class SyntheticSpec:
    scale: float = 0.1
    seed: int = 0
    n_mels: int = 32
    frames: int = 64
    secondary_rate: float = 0.06
    min_count: int = 6
    noise: float = 2.0

    def cache_key(self) -> str:
        payload = json.dumps({"v": GENERATOR_VERSION, **asdict(self)}, sort_keys=True)
        digest = hashlib.sha256(payload.encode()).hexdigest()[:10]
        return f"synthetic-s{self.scale:g}-seed{self.seed}-{self.n_mels}x{self.frames}-{digest}"


@dataclass(frozen=True)
class GenreTable:
    genres: tuple[str, ...]
    counts: np.ndarray
    families: tuple[str, ...]


def seed_genre_table() -> GenreTable:
    """The 70 genres of the hand-run log with their track counts and family."""
    text = resources.files("genretune.data").joinpath("seed_genres.csv").read_text(encoding="utf-8")
    rows = list(csv.DictReader(text.splitlines()))
    return GenreTable(
        genres=tuple(r["genre"] for r in rows),
        counts=np.array([int(r["count"]) for r in rows], dtype=np.int64),
        families=tuple(r["family"] for r in rows),
    )


def scaled_counts(counts: np.ndarray, scale: float, min_count: int) -> np.ndarray:
    if scale == 1.0:
        return counts.copy()
    return np.maximum(np.rint(counts * scale).astype(np.int64), min_count)


def assign_labels(
    counts: np.ndarray, families: tuple[str, ...], rate: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(primary genre per track, multi-hot labels) whose column sums equal `counts` exactly.

    A genre's secondaries go to tracks of another genre in its family that have no secondary
    yet; whatever cannot be placed stays a primary, so the counts always hold.
    """
    n_genres = len(counts)
    wanted = np.minimum(np.rint(counts * rate).astype(np.int64), counts - 1)
    primaries = counts - wanted
    primary = rng.permutation(np.repeat(np.arange(n_genres), primaries))
    secondary = np.full(len(primary), -1)
    family_of = np.array([sorted(set(families)).index(f) for f in families])
    extra_primaries: list[np.ndarray] = []
    for g in rng.permutation(n_genres):
        if wanted[g] == 0:
            continue
        pool = np.flatnonzero(
            (family_of[primary] == family_of[g]) & (primary != g) & (secondary < 0)
        )
        take = min(int(wanted[g]), len(pool))
        secondary[rng.choice(pool, size=take, replace=False)] = g
        if take < wanted[g]:
            extra_primaries.append(np.full(int(wanted[g]) - take, g))
    if extra_primaries:
        extra = np.concatenate(extra_primaries)
        primary = np.concatenate([primary, extra])
        secondary = np.concatenate([secondary, np.full(len(extra), -1)])
    labels = np.zeros((len(primary), n_genres), dtype=np.uint8)
    labels[np.arange(len(primary)), primary] = 1
    has_second = secondary >= 0
    labels[np.flatnonzero(has_second), secondary[has_second]] = 1
    return primary, labels


def _genre_patterns(
    families: tuple[str, ...], n_mels: int, frames: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(spectral envelope (G, n_mels), modulation period in frames (G,)) of each genre."""
    family_names = sorted(set(families))
    mel = np.arange(n_mels)
    fam_centre = {f: rng.uniform(0.15, 0.85) * n_mels for f in family_names}
    fam_period = {f: rng.uniform(4.0, 12.0) for f in family_names}
    envelopes, periods = [], []
    for fam in families:
        broad = np.exp(-0.5 * ((mel - fam_centre[fam]) / (0.18 * n_mels)) ** 2)
        peak_at = np.clip(fam_centre[fam] + rng.normal(0, 0.15 * n_mels), 1, n_mels - 2)
        peak = np.exp(-0.5 * ((mel - peak_at) / 1.2) ** 2)
        envelopes.append(0.8 * broad + 0.9 * peak)
        periods.append(fam_period[fam] * rng.uniform(0.8, 1.25))
    return np.array(envelopes), np.array(periods)


def _render_chunk(
    labels: np.ndarray,
    envelopes: np.ndarray,
    periods: np.ndarray,
    spec: SyntheticSpec,
    rng: np.random.Generator,
) -> np.ndarray:
    n, n_genres = labels.shape
    t = np.arange(spec.frames)
    # Each track plays each genre at its own loudness, phase and slight tempo drift.
    gain = rng.uniform(0.5, 1.3, size=(n, n_genres)) * labels
    phase = rng.uniform(0, 2 * np.pi, size=(n, n_genres))
    period = periods[None, :] * rng.uniform(0.93, 1.07, size=(n, n_genres))
    modulation = 0.5 + 0.5 * np.cos(
        2 * np.pi * t[None, None, :] / period[..., None] + phase[..., None]
    )
    signal = np.einsum("ng,gm,ngt->nmt", gain, envelopes, modulation, optimize=True)
    # Pitch jitter: shift the whole spectrum up or down by up to one mel bin.
    shift = rng.integers(-1, 2, size=n)
    for s in (-1, 1):
        rows = shift == s
        signal[rows] = np.roll(signal[rows], s, axis=1)
    tilt = rng.normal(0, 0.4, size=(n, 1, 1)) * np.linspace(-1, 1, spec.n_mels)[None, :, None]
    noise = rng.normal(0, spec.noise, size=(n, spec.n_mels, spec.frames))
    return (2.0 * signal + tilt + noise).astype(np.float16)


def generate(spec: SyntheticSpec) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], np.ndarray]:
    """(features, labels, genres, split) of the synthetic dataset; deterministic for a spec."""
    table = seed_genre_table()
    root = np.random.SeedSequence(spec.seed)
    label_seq, pattern_seq, render_seq = root.spawn(3)
    counts = scaled_counts(table.counts, spec.scale, spec.min_count)
    _, labels = assign_labels(
        counts, table.families, spec.secondary_rate, np.random.default_rng(label_seq)
    )
    envelopes, periods = _genre_patterns(
        table.families, spec.n_mels, spec.frames, np.random.default_rng(pattern_seq)
    )
    features = np.empty((labels.shape[0], spec.n_mels, spec.frames), dtype=np.float16)
    for i, chunk_seq in enumerate(render_seq.spawn((labels.shape[0] + _CHUNK - 1) // _CHUNK)):
        rows = slice(i * _CHUNK, (i + 1) * _CHUNK)
        features[rows] = _render_chunk(
            labels[rows], envelopes, periods, spec, np.random.default_rng(chunk_seq)
        )
    split = stratified_split(labels, seed=spec.seed)
    return features, labels, table.genres, split


def synthetic_dir_ready(spec: SyntheticSpec, cache_root: Path) -> bool:
    """The feature dir of `spec` is complete under `cache_root` (nothing to write)."""
    return (cache_root / spec.cache_key() / "split.npy").is_file()


def ensure_synthetic_dir(spec: SyntheticSpec, cache_root: Path) -> Path:
    """The feature dir of `spec` under `cache_root`, generated on first use."""
    directory = cache_root / spec.cache_key()
    if not synthetic_dir_ready(spec, cache_root):
        _check_room(spec, cache_root)
        try:
            cache_root.mkdir(parents=True, exist_ok=True)
            features, labels, genres, split = generate(spec)
            write_feature_dir(directory, features, labels, genres, split)
        except PermissionError as exc:
            raise InputError(
                f"{cache_root}: cannot write the generated dataset there ({exc.strerror}); "
                "set GENRETUNE_CACHE_DIR to a writable directory"
            ) from None
    return directory


def _check_room(spec: SyntheticSpec, cache_root: Path) -> None:
    """The generated features are held in memory, then written to the cache: both must fit."""
    import shutil

    tracks = int(scaled_counts(seed_genre_table().counts, spec.scale, spec.min_count).sum())
    needed = tracks * spec.n_mels * spec.frames * 2  # float16; labels >= tracks, an upper bound
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    existing = cache_root
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    if needed > memory // 2 or needed > free:
        raise InputError(
            f"--synthetic-scale {spec.scale:g} with --n-mels {spec.n_mels} --frames "
            f"{spec.frames}: the dataset would take {needed / 2**30:,.1f} GiB (this machine has "
            f"{memory / 2**30:,.1f} GiB of memory, {free / 2**30:,.1f} GiB free in {existing})"
        )
