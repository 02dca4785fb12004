"""Throughput inside a Ray trial against `genretune train`, alternating the two."""

from __future__ import annotations

import statistics
from pathlib import Path

from speed.common import demo_flat


def _train_samples_per_s(flat: dict, threads: int) -> list[float]:
    from genretune.data import load_dataset
    from genretune.model.config import config_from_flat
    from genretune.model.device import resolve_runtime
    from genretune.model.prepare import prepare_data
    from genretune.model.training import fit

    cfg = config_from_flat(flat)
    prepared = prepare_data(load_dataset(cfg.data), cfg.filter, cfg.loss)
    fitted = fit(prepared, cfg, resolve_runtime("cpu", threads))
    return [h["n_train"] / h["epoch_seconds"] for h in fitted.history]


def _trial_samples_per_s(flat: dict, storage: Path, name: str) -> list[float]:
    from ray import tune

    from genretune.model.config import config_from_flat
    from genretune.search.trainable import dataset_for_trials, train_trial

    cfg = config_from_flat(flat)
    trainable = tune.with_resources(
        tune.with_parameters(train_trial, dataset=dataset_for_trials(cfg.data, False)), {"cpu": 1}
    )
    tuner = tune.Tuner(
        trainable,
        param_space=cfg.to_flat(),
        run_config=tune.RunConfig(name=name, storage_path=str(storage), verbose=0),
    )
    df = tuner.fit()[0].metrics_dataframe
    return list(df["n_train"] / df["epoch_seconds"])


def throughput(storage: Path, repeats: int, epochs: int) -> dict:
    flat = demo_flat(epochs=epochs, patience=epochs, seed=0)
    train, trial, pairs = [], [], []
    for i in range(repeats):  # alternate, so drift hits both sides
        a = _train_samples_per_s(flat, threads=1)[1:]  # skip the warm-up epoch
        b = _trial_samples_per_s(flat, storage, f"speed{i}")[1:]
        train, trial = train + a, trial + b
        pairs.append(statistics.median(b) / statistics.median(a))
    ratio = statistics.median(trial) / statistics.median(train)
    return {
        "train_samples_per_s": statistics.median(train),
        "trial_samples_per_s": statistics.median(trial),
        "ratio": ratio,
        "ratio_per_alternation": pairs,
        "epochs_measured": len(train),
    }
