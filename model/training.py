"""The one training loop, driven by `genretune train` and by the Ray Tune trainable.

AdamW + BCE-with-logits(pos_weight), patience on the validation objective, best-epoch weights
restored at the end. A per-epoch callback receives the epoch's metrics and can ask for a
checkpoint payload (plain tensors and numbers, loadable with `torch.load(weights_only=True)`).
"""

from __future__ import annotations

import copy
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from genretune.data import InputError
from genretune.model.config import TrainConfig
from genretune.model.decision import DecisionRule
from genretune.model.device import FeatureFeeder, Runtime, release_freed_heap
from genretune.model.evaluation import predict_proba, split_metrics, tuned_rule_metrics
from genretune.model.metric_keys import RUNNING_MAXIMA
from genretune.model.network import GenreCNN
from genretune.model.prepare import PreparedData


class TrainingDiverged(InputError):
    """The loss stopped being a number: a learning rate too high for the data, or features of
    an extreme scale."""


STOP_PATIENCE = "patience"
STOP_MAX_EPOCHS = "max_epochs"


@dataclass(frozen=True)
class EpochReport:
    epoch: int  # 1-based, equals Ray Tune's training_iteration
    metrics: dict[str, float]
    improved: bool
    checkpoint_state: Callable[[], dict[str, Any]]


@dataclass
class FitResult:
    model: nn.Module  # with the best epoch's weights
    history: list[dict[str, float]]
    best_epoch: int
    best_score: float
    stop_reason: str


def decision_rule(cfg: TrainConfig) -> DecisionRule:
    return DecisionRule(threshold=cfg.decision.threshold, top_k=cfg.decision.top_k)


def build_model(cfg: TrainConfig, n_genres: int) -> GenreCNN:
    torch.manual_seed(cfg.seed)
    return GenreCNN(n_genres, cfg.model.base_channels, cfg.model.dropout)


def _epoch_seed(seed: int, epoch: int) -> int:
    # Every epoch draws its shuffle and dropout from (seed, epoch) alone, so a run resumed from a
    # checkpoint makes exactly the same draws as an uninterrupted one.
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def _train_one_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    prepared: PreparedData,
    feeder: FeatureFeeder,
    labels: torch.Tensor,
    cfg: TrainConfig,
    runtime: Runtime,
    epoch: int,
) -> float:
    model.train()
    seed = _epoch_seed(cfg.seed, epoch)
    torch.manual_seed(seed)
    order = np.random.default_rng(seed).permutation(len(prepared.train_idx))
    bs = cfg.optim.batch_size
    # Sorted rows read a memory map sequentially; the order inside a batch does not matter.
    pos = np.concatenate([np.sort(order[s : s + bs]) for s in range(0, len(order), bs)])
    # One copy of the epoch's indices to the device, none per batch.
    rows = feeder.rows(prepared.train_idx[pos])
    label_rows = torch.from_numpy(pos).to(labels.device)
    total = torch.zeros((), device=labels.device)
    for number, (start, x) in enumerate(feeder.batches(rows, bs), start=1):
        y = labels[label_rows[start : start + bs]].float()
        with torch.autocast(runtime.torch_device.type, torch.bfloat16, enabled=runtime.amp):
            logits = model(x)
        loss = loss_fn(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.detach() * len(y)  # summed on the device: no sync per batch
        release_freed_heap(number)
    return float(total) / max(len(pos), 1)


def _snapshot(
    epoch: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    history: list[dict[str, float]],
    best: tuple[float, int, int, dict[str, torch.Tensor]],
    cfg: TrainConfig,
) -> dict[str, Any]:
    """Checkpoint payload; a deep copy, because training goes on after the callback."""
    best_score, best_epoch, since_best, best_state = best
    return copy.deepcopy(
        {
            "epoch": epoch,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "history": history,
            "best_score": best_score,
            "best_epoch": best_epoch,
            "since_best": since_best,
            "best_model": best_state,
            "config": cfg.to_flat(),
        }
    )


def fit(
    prepared: PreparedData,
    cfg: TrainConfig,
    runtime: Runtime,
    on_epoch: Callable[[EpochReport], None] | None = None,
    resume: dict[str, Any] | None = None,
) -> FitResult:
    """Train with patience; `resume` is a payload from `EpochReport.checkpoint_state()`."""
    if runtime.num_threads:
        torch.set_num_threads(runtime.num_threads)
    device = runtime.torch_device
    model = build_model(cfg, prepared.genre_filter.n_kept).to(device)
    if runtime.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay
    )
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.from_numpy(prepared.pos_weight).to(device))
    feeder = FeatureFeeder(prepared.dataset.features, runtime)
    # 0/1 labels stay one byte each (a float32 copy would add 4 bytes per track and genre to
    # every trial); each batch is converted on its own.
    train_labels = torch.from_numpy(prepared.kept_labels(prepared.train_idx)).to(device)
    rule = decision_rule(cfg)

    history: list[dict[str, float]] = []
    best_score, best_epoch, since_best = -np.inf, 0, 0
    best_state = copy.deepcopy(model.state_dict())
    start_epoch = 1
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        history = [dict(row) for row in resume["history"]]
        best_score, best_epoch = float(resume["best_score"]), int(resume["best_epoch"])
        since_best, best_state = int(resume["since_best"]), resume["best_model"]
        start_epoch = int(resume["epoch"]) + 1

    stop_reason = STOP_PATIENCE if since_best >= cfg.optim.patience else STOP_MAX_EPOCHS
    last_epoch = start_epoch - 1 if stop_reason == STOP_PATIENCE else cfg.optim.epochs
    for epoch in range(start_epoch, last_epoch + 1):
        began = time.perf_counter()
        train_loss = _train_one_epoch(
            model, optimizer, loss_fn, prepared, feeder, train_labels, cfg, runtime, epoch
        )
        if not np.isfinite(train_loss):
            raise TrainingDiverged(
                f"training diverged in epoch {epoch} (loss {train_loss}): lower --lr "
                f"{cfg.optim.lr:g} or check the features' scale"
            )
        prob = predict_proba(model, feeder, prepared.val_idx, runtime)
        metrics = split_metrics(prepared, prepared.val_idx, prob, rule, "val")
        metrics.update(tuned_rule_metrics(prepared, prob))
        metrics.update(
            epoch=epoch,
            train_loss=train_loss,
            n_genres=prepared.genre_filter.n_kept,
            n_train=len(prepared.train_idx),
        )
        for best in RUNNING_MAXIMA:
            key = best.removeprefix("best_")
            metrics[best] = max([metrics[key], *(r[key] for r in history)])
        score = metrics[cfg.objective]
        improved = score > best_score
        if improved:
            best_score, best_epoch, since_best = score, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            since_best += 1
        metrics["epochs_since_best"] = since_best
        metrics["epoch_seconds"] = time.perf_counter() - began
        history.append(metrics)
        if on_epoch is not None:
            state = functools.partial(
                _snapshot,
                epoch=epoch,
                model=model,
                optimizer=optimizer,
                history=history[:],
                best=(best_score, best_epoch, since_best, best_state),
                cfg=cfg,
            )
            on_epoch(EpochReport(epoch, dict(metrics), improved, state))
        if since_best >= cfg.optim.patience:
            stop_reason = STOP_PATIENCE
            break
    model.load_state_dict(best_state)
    return FitResult(model, history, best_epoch, float(best_score), stop_reason)
