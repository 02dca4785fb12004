"""The SearchSettings a `genretune search --profile demo ...` command line builds, without
starting anything: the bank and the simulator use exactly the search the CLI would run."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def demo_settings(extra: list[str] | None = None):
    from genretune.search.cli.search import settings_from_argv

    return settings_from_argv(["--profile", "demo", "--name", "simulated", *(extra or [])])


def bank_flags(provenance: dict) -> list[str]:
    """Flags that make the demo search match the bank's recording (a test bank may be
    recorded with fewer epochs or smaller data than the demo's; a second task with another
    data seed, size, input shape or training length)."""
    base = provenance.get("base_config", {})
    flags = []
    for key in ("epochs", "synthetic_scale", "data_seed", "n_mels", "frames"):
        if key in base:
            flags += ["--" + key.replace("_", "-"), str(base[key])]
    return flags


@dataclass(frozen=True)
class _GenreCounts:
    """What `fit_space_to_data` reads of a dataset: per-genre track counts and the genres."""

    labels: np.ndarray  # (1, G): the counts as one row, so labels.sum(axis=0) gives them
    genres: tuple[str, ...]
    source: str = "the curve bank's data"


def fit_to_bank(settings, genre_counts: np.ndarray):
    """The settings after `genretune search` fits its space to the bank's dataset."""
    from genretune.search.checks import fit_space_to_data

    data = _GenreCounts(genre_counts[None, :], tuple(map(str, range(len(genre_counts)))))
    return fit_space_to_data(settings, data)
