"""Datasets for genretune: feature dirs, the synthetic source, fixed splits and genre filtering.

This package imports neither `model`, `search`, `results`, ray nor optuna.
"""

from genretune.data.dataset import SPLIT_NAMES, TEST, TRAIN, VAL, Dataset
from genretune.data.filtering import GenreFilter, filter_genres
from genretune.data.sources import DataConfig, load_dataset
from genretune.errors import InputError, first_line

__all__ = [
    "SPLIT_NAMES",
    "TEST",
    "TRAIN",
    "VAL",
    "DataConfig",
    "Dataset",
    "GenreFilter",
    "InputError",
    "filter_genres",
    "first_line",
    "load_dataset",
]
