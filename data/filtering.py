"""Genre filtering as in the hand-run log's `filter_genres()`: keep well-represented genres.

Counts come from the full dataset (all splits), exactly as the log computed them, so the kept
genre set does not depend on the split. Tracks left with no kept label are dropped from
training only; validation and test keep every track so trials stay comparable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from genretune.errors import BadValue


@dataclass(frozen=True)
class GenreFilter:
    """Which genre columns a trial keeps, with the numbers the log reported."""

    kept_idx: np.ndarray  # original column indices, ascending
    genres: tuple[str, ...]  # all original genre names
    counts: np.ndarray  # per original genre, full dataset
    min_samples_per_genre: int
    max_genres: int | None

    @property
    def n_kept(self) -> int:
        return len(self.kept_idx)

    @property
    def kept_genres(self) -> tuple[str, ...]:
        return tuple(self.genres[i] for i in self.kept_idx)

    @property
    def kept_mask(self) -> np.ndarray:
        mask = np.zeros(len(self.genres), dtype=bool)
        mask[self.kept_idx] = True
        return mask

    def kept_counts(self) -> np.ndarray:
        return self.counts[self.kept_idx]

    def tracks_with_kept_label(self, labels: np.ndarray) -> np.ndarray:
        return labels[:, self.kept_idx].any(axis=1)


def filter_genres(
    labels: np.ndarray,
    genres: tuple[str, ...],
    min_samples_per_genre: int = 0,
    max_genres: int | None = None,
) -> GenreFilter:
    """Keep genres with >= `min_samples_per_genre` tracks, then at most `max_genres` of them.

    `max_genres` keeps the most common genres (ties: lower column index first).
    """
    if min_samples_per_genre < 0:
        raise BadValue("min_samples_per_genre", " must be >= 0")
    if max_genres is not None and max_genres < 1:
        raise BadValue("max_genres", " must be >= 1")
    counts = labels.sum(axis=0, dtype=np.int64)
    candidates = np.flatnonzero(counts >= max(min_samples_per_genre, 1))
    if len(candidates) == 0:
        raise BadValue(
            "min_samples_per_genre",
            f" {min_samples_per_genre} keeps no genre "
            f"(the most common genre has {counts.max()} tracks)",
        )
    if max_genres is not None and len(candidates) > max_genres:
        by_count = candidates[np.argsort(-counts[candidates], kind="stable")]
        candidates = np.sort(by_count[:max_genres])
    return GenreFilter(
        kept_idx=candidates,
        genres=tuple(genres),
        counts=counts,
        min_samples_per_genre=min_samples_per_genre,
        max_genres=max_genres,
    )
