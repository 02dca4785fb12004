"""The Ray Tune function trainable: a thin adapter over `model.training.fit`.

Every epoch it reports the training loop's metrics with a checkpoint (model, optimizer, epoch,
best-so-far state); a restarted trial resumes from `tune.get_checkpoint()`.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import ray
import torch
from ray import tune

from genretune.data import DataConfig, Dataset, load_dataset
from genretune.model.config import config_from_flat
from genretune.model.device import resolve_runtime
from genretune.model.prepare import prepare_data
from genretune.model.training import EpochReport, fit

STATE_FILE = "state.pt"
logger = logging.getLogger(__name__)


def _load_state(directory: Path) -> dict[str, Any]:
    return torch.load(directory / STATE_FILE, map_location="cpu", weights_only=True)


def load_checkpoint_state(checkpoint: tune.Checkpoint | None) -> dict[str, Any] | None:
    """The training state of the newest readable checkpoint, or None to start from scratch.

    A truncated or corrupt checkpoint must not crash the search: the trial falls back to the
    previous checkpoint in its directory (on a filesystem path), else retrains from scratch.
    Either way it costs time but loses no result.
    """
    if checkpoint is None:
        return None
    try:
        with checkpoint.as_directory() as directory:
            return _load_state(Path(directory))
    except Exception as exc:  # any unreadable checkpoint: try older ones
        logger.warning("checkpoint %s is unreadable (%s)", checkpoint.path, exc)
    broken = Path(checkpoint.path)
    if broken.parent.is_dir():
        older = sorted(
            (p for p in broken.parent.glob("checkpoint_*") if p.name < broken.name), reverse=True
        )
        for candidate in older:
            try:
                return _load_state(candidate)
            except Exception:  # also unreadable: keep going back
                continue
    logger.warning("no readable checkpoint; restarting the trial from scratch")
    return None


def _trial_resources() -> tuple[int, float]:
    """(torch threads, share of a GPU) of this trial: one thread per CPU Ray gave it."""
    resources = tune.get_context().get_trial_resources()
    required = resources.required_resources if resources else {}
    return max(1, int(required.get("CPU", 1))), float(required.get("GPU", 0) or 1.0)


def trial_device(gpu_ids: list) -> str:
    """cuda when Ray gave the trial a GPU. A trial given a GPU never falls back to the CPU in
    silence: with a CPU build of torch that is an error naming the fix."""
    if not gpu_ids:
        return "cpu"
    if not torch.cuda.is_available():
        raise RuntimeError(
            f"this trial was given GPU {gpu_ids} but torch {torch.__version__} cannot use it "
            f"(CUDA build: {torch.version.cuda or 'no, a CPU build'}); install a CUDA build on "
            "the nodes, e.g. `make setup TORCH_SPEC=torch`, or run with --gpus-per-trial 0"
        )
    return "cuda"


def train_trial(config: dict[str, Any], dataset: Dataset | None = None) -> None:
    """Train one configuration; `dataset` comes from `tune.with_parameters` (read-only arrays
    shared through the object store) or is None to memory-map the data on the worker."""
    cfg = config_from_flat(config)
    if dataset is None:
        dataset = load_dataset(cfg.data)
    device = trial_device(ray.get_gpu_ids())
    threads, gpu_share = _trial_resources()
    runtime = resolve_runtime(device, threads, gpu_share=min(gpu_share, 1.0))
    prepared = prepare_data(dataset, cfg.filter, cfg.loss)

    node_id = ray.get_runtime_context().get_node_id()

    def on_epoch(report: EpochReport) -> None:
        with tempfile.TemporaryDirectory() as directory:
            torch.save(report.checkpoint_state(), Path(directory) / STATE_FILE)
            metrics = {**report.metrics, "node_id": node_id, "device": runtime.device}
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))

    fit_in_trial(prepared, cfg, runtime, on_epoch, load_checkpoint_state(tune.get_checkpoint()))


def fit_in_trial(prepared, cfg, runtime, on_epoch, resume) -> None:
    """The training loop as a trial runs it: a CUDA out-of-memory error says what to change
    (Ray then restarts the trial from its last checkpoint, up to --max-failures), and the
    GPU memory the trial cached is given back when it ends."""
    try:
        fit(prepared, cfg, runtime, on_epoch=on_epoch, resume=resume)
    except torch.OutOfMemoryError as exc:
        raise RuntimeError(
            f"CUDA out of memory in a trial holding {runtime.gpu_share:g} of a GPU "
            f"(base_channels {cfg.model.base_channels}, batch {cfg.optim.batch_size}): give "
            "trials a larger --gpus-per-trial (fewer per GPU), or a smaller --batch-size"
        ) from exc
    finally:
        if runtime.torch_device.type == "cuda":
            # A reused actor must not keep this trial's peak reserved for the next one.
            torch.cuda.empty_cache()


def dataset_for_trials(data: DataConfig, on_workers: bool) -> Dataset | None:
    """The dataset the driver shares with every trial (loaded once), or None for workers to
    memory-map it themselves (a feature dir on storage every node can read).

    The features go to Ray's object store as a plain ndarray: workers then map them read-only,
    zero-copy, once per node. A `np.memmap` would be pickled in-band instead, giving every trial
    worker its own private copy.
    """
    if on_workers:
        return None
    dataset = load_dataset(data)
    return replace(dataset, features=np.asarray(dataset.features))
