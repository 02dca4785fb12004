"""The hand-run log's dataset tables: genre distribution, imbalance and the kept-genre table."""

from __future__ import annotations

import numpy as np

from genretune.data.dataset import SPLIT_NAMES, Dataset
from genretune.data.filtering import GenreFilter


def _distribution(names: list[str], counts: np.ndarray) -> list[str]:
    top, bottom = int(np.argmax(counts)), int(np.argmin(counts))
    n = len(counts)
    under500, under100 = int((counts < 500).sum()), int((counts < 100).sum())
    ratio = counts[top] / max(counts[bottom], 1)
    return [
        f"Top genre:    {counts[top]:>6,} samples ({names[top]})",
        f"Bottom genre: {counts[bottom]:>6,} samples ({names[bottom]})",
        f"Imbalance:    {ratio:.1f}x",
        f"Genres with <500 samples: {under500}/{n} ({under500 / n:.0%})",
        f"Genres with <100 samples: {under100}/{n} ({under100 / n:.0%})",
    ]


def dataset_report(dataset: Dataset, genre_filter: GenreFilter) -> str:
    """Text report of the dataset and of what the filter keeps.

    "Samples" counts genre labels, as the log's tables did (its per-genre counts sum to its
    totals); tracks are reported separately because a track can carry more than one genre.
    """
    counts = genre_filter.counts
    names = list(dataset.genres)
    labels_per_track = dataset.labels.sum(1)
    split_sizes = ", ".join(
        f"{name} {int((dataset.split == i).sum()):,}" for i, name in enumerate(SPLIT_NAMES)
    )
    lines = [
        f"Data: {dataset.source}",
        f"Dataset: {dataset.n_genres} genres, {int(counts.sum()):,} samples (genre labels) "
        f"on {dataset.n_tracks:,} tracks, {labels_per_track.mean():.2f} labels per track",
        f"Input: {dataset.input_shape[0]} mels x {dataset.input_shape[1]} frames; "
        f"split: {split_sizes}",
        "",
        f"Genre distribution (original {dataset.n_genres} genres)",
        *_distribution(names, counts),
    ]
    if genre_filter.n_kept == dataset.n_genres:
        return "\n".join(lines + ["", "No genre filter: all genres kept."])
    kept_counts = genre_filter.kept_counts()
    kept_names = list(genre_filter.kept_genres)
    tracks_kept = int(genre_filter.tracks_with_kept_label(dataset.labels).sum())
    rule = f">= {genre_filter.min_samples_per_genre} samples"
    if genre_filter.max_genres is not None:
        rule += f", at most {genre_filter.max_genres} genres"
    lines += [
        "",
        f"Viable genres ({rule}): {genre_filter.n_kept} genres, "
        f"{dataset.n_genres - genre_filter.n_kept} dropped",
    ]
    order = np.argsort(-kept_counts, kind="stable")
    for rank, i in enumerate(order, start=1):
        lines.append(f"{rank:>3}. {kept_names[i]:<24s}: {kept_counts[i]:>6,} samples")
    lines += [
        "",
        f"Total: {int(kept_counts.sum()):,} samples (genre labels) on {tracks_kept:,} tracks "
        f"({dataset.n_tracks - tracks_kept:,} tracks left with no genre are dropped from training)",
        f"Imbalance: {kept_counts.max() / max(kept_counts.min(), 1):.1f}x "
        f"(down from {counts.max() / max(counts.min(), 1):.1f}x)",
        *_distribution(kept_names, kept_counts)[3:],
    ]
    return "\n".join(lines)
