"""`genretune data stats`: the genre tables of a dataset, with a filter's kept genres."""

from __future__ import annotations

import argparse

from genretune.search.cli.common import add_data_flags, config_flags


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_data_flags(p)


def run(args: argparse.Namespace) -> int:
    from genretune.data import filter_genres, load_dataset
    from genretune.data.report import dataset_report
    from genretune.model.config import config_from_flat

    cfg = config_from_flat(config_flags(args))
    dataset = load_dataset(cfg.data)
    genre_filter = filter_genres(
        dataset.labels, dataset.genres, cfg.filter.min_samples_per_genre, cfg.filter.max_genres
    )
    print(dataset_report(dataset, genre_filter))
    return 0
