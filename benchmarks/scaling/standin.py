"""A stand-in trial: reports like a genretune trial (the keys the monitor, the stoppers, ASHA
and the searcher read, a checkpoint every epoch) but sleeps instead of training, so a search of
hundreds of trials on 32 logical CPUs measures genretune's and Ray's own work.

`launch_with_standin(seconds_per_epoch)` makes `genretune.search.launch` build this trainable
instead of the CNN's, in this process (the driver); nothing else of the search path changes."""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path
from typing import Any


def standin_trial(config: dict[str, Any], seconds_per_epoch: float = 2.0) -> None:
    from ray import tune

    epochs = int(config.get("epochs", 15))
    start = 1
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            start = int((Path(directory) / "epoch").read_text()) + 1
    # A smooth curve whose height depends on the configuration, with a peak epoch.
    lr = float(config.get("lr", 1e-3))
    power = float(config.get("pos_weight_power", 0.5))
    height = 0.5 + 0.2 * math.exp(-((math.log10(lr) + 3) ** 2)) - 0.1 * abs(power - 0.5)
    best, best_epoch = -1.0, 0
    for epoch in range(1, epochs + 1):
        value = height * (1 - math.exp(-epoch / 4)) - 0.002 * max(0, epoch - 10)
        if value > best:
            best, best_epoch = value, epoch
        if epoch < start:
            continue
        time.sleep(seconds_per_epoch)
        metrics = {
            "epoch": epoch,
            "val_f1": value,
            "best_val_f1": best,
            "tuned_val_f1": value + 0.01,
            "best_tuned_val_f1": best + 0.01,
            "val_f1_macro": value / 2,
            "best_val_f1_macro": best / 2,
            "val_coverage": min(1.0, 0.3 + power / 2),
            "tuned_threshold": 0.5,
            "tuned_top_k": 3,
            "val_precision": value,
            "val_recall": value,
            "train_loss": 1 - value,
            "epochs_since_best": epoch - best_epoch,
            "epoch_seconds": seconds_per_epoch,
            "node_id": "standin",
            "device": "cpu",
        }
        with tempfile.TemporaryDirectory() as directory:
            (Path(directory) / "epoch").write_text(str(epoch))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))


def launch_with_standin(seconds_per_epoch: float) -> None:
    """Make genretune's search build the stand-in trainable (resources as the real one)."""
    import ray.cloudpickle
    from ray import tune

    import genretune.search.launch as launch
    from scaling import standin

    # Workers do not have this benchmark's directory on their path: ship the function itself.
    ray.cloudpickle.register_pickle_by_value(standin)

    def trainable(s):
        resources = {"cpu": s.resources.cpus_per_trial, "gpu": s.resources.gpus_per_trial}
        run = tune.with_parameters(standin.standin_trial, seconds_per_epoch=seconds_per_epoch)
        return tune.with_resources(run, resources)

    launch._trainable = trainable
