"""The in-memory view of a dataset shared by every trial."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TRAIN, VAL, TEST = 0, 1, 2
SPLIT_NAMES = ("train", "val", "test")


@dataclass(frozen=True)
class Dataset:
    """Features, multi-hot labels, genre names and the fixed train/val/test split.

    `features` is usually a read-only memory map of shape (N, n_mels, frames); `labels` is (N, G)
    uint8 and `split` is (N,) int8 with values TRAIN/VAL/TEST.
    """

    features: np.ndarray
    labels: np.ndarray
    genres: tuple[str, ...]
    split: np.ndarray
    source: str

    @property
    def n_tracks(self) -> int:
        return int(self.labels.shape[0])

    @property
    def n_genres(self) -> int:
        return int(self.labels.shape[1])

    @property
    def input_shape(self) -> tuple[int, int]:
        return int(self.features.shape[1]), int(self.features.shape[2])

    def genre_counts(self) -> np.ndarray:
        """Tracks carrying each genre, over the full dataset (all splits), as the log counted."""
        return self.labels.sum(axis=0, dtype=np.int64)

    def split_indices(self, which: int) -> np.ndarray:
        return np.flatnonzero(self.split == which)

    def frequency_thirds(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Genre indices of the rare, middle and common thirds by training-split frequency
        (ties: lower genre index first among the rarer)."""
        counts = self.labels[self.split == TRAIN].sum(axis=0, dtype=np.int64)
        order = np.argsort(counts, kind="stable")
        rare, middle, common = np.array_split(order, 3)
        return np.sort(rare), np.sort(middle), np.sort(common)
