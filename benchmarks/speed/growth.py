"""Seconds per training epoch against data scale and model width."""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch

from speed.common import demo_flat


def epoch_seconds_estimate(scale: float, base: int, threads: int, batches: int = 15) -> dict:
    """Seconds per training epoch at a data scale, from `batches` timed batches."""
    from genretune.data import load_dataset
    from genretune.model.config import config_from_flat
    from genretune.model.device import FeatureFeeder, resolve_runtime
    from genretune.model.network import GenreCNN
    from genretune.model.prepare import prepare_data

    torch.set_num_threads(threads)
    cfg = config_from_flat(demo_flat(synthetic_scale=scale, base_channels=base))
    prepared = prepare_data(load_dataset(cfg.data), cfg.filter, cfg.loss)
    runtime = resolve_runtime("cpu", threads)
    model = GenreCNN(n_genres=prepared.genre_filter.n_kept, base_channels=base)
    model = model.to(memory_format=torch.channels_last)
    feeder = FeatureFeeder(prepared.dataset.features, runtime)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    bs = cfg.optim.batch_size
    idx = prepared.train_idx
    n_batches = int(np.ceil(len(idx) / bs))
    times = []
    for b in range(min(batches + 2, n_batches)):
        rows = idx[b * bs : (b + 1) * bs]
        began = time.perf_counter()
        x = feeder.batch(rows)
        y = torch.as_tensor(prepared.kept_labels(rows), dtype=torch.float32)
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()
        times.append(time.perf_counter() - began)
    per_batch = statistics.median(times[2:] or times)
    return {
        "scale": scale,
        "base_channels": base,
        "train_tracks": int(len(idx)),
        "epoch_s": per_batch * n_batches,
    }
