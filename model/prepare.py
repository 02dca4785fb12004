"""What a run trains on: the dataset seen through one genre filter, with its class weights."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from genretune.data import TEST, TRAIN, VAL, Dataset, GenreFilter, InputError, filter_genres
from genretune.model.config import FilterConfig, LossConfig
from genretune.model.pos_weight import calculate_pos_weight


@dataclass(frozen=True)
class PreparedData:
    dataset: Dataset
    genre_filter: GenreFilter
    train_idx: np.ndarray  # train tracks with at least one kept genre
    val_idx: np.ndarray  # every validation track (removed genres count as never predicted)
    test_idx: np.ndarray
    pos_weight: np.ndarray  # (n_kept,)

    @property
    def kept_idx(self) -> np.ndarray:
        return self.genre_filter.kept_idx

    def kept_labels(self, idx: np.ndarray) -> np.ndarray:
        return self.dataset.labels[np.ix_(idx, self.kept_idx)]


def prepare_data(dataset: Dataset, filt: FilterConfig, loss: LossConfig) -> PreparedData:
    genre_filter = filter_genres(
        dataset.labels, dataset.genres, filt.min_samples_per_genre, filt.max_genres
    )
    has_kept = genre_filter.tracks_with_kept_label(dataset.labels)
    train_idx = np.flatnonzero((dataset.split == TRAIN) & has_kept)
    if len(train_idx) == 0:
        raise InputError(
            "--min-samples-per-genre/--max-genres leave no training track with a kept genre"
        )
    val_idx = dataset.split_indices(VAL)
    if len(val_idx) == 0:
        raise InputError(f"{dataset.source}: the validation split is empty")
    train_counts = dataset.labels[np.ix_(train_idx, genre_filter.kept_idx)].sum(0, dtype=np.int64)
    pos_weight = calculate_pos_weight(
        train_counts, len(train_idx), loss.pos_weight_power, loss.pos_weight_cap
    )
    return PreparedData(
        dataset=dataset,
        genre_filter=genre_filter,
        train_idx=train_idx,
        val_idx=val_idx,
        test_idx=dataset.split_indices(TEST),
        pos_weight=pos_weight,
    )
