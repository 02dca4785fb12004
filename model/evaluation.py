"""Predictions and the reported metric keys for one split."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from genretune.model.decision import DecisionRule, sweep_decision_rules
from genretune.model.device import FeatureFeeder, Runtime, release_freed_heap
from genretune.model.metrics import (
    coverage_metrics,
    macro_pr_auc,
    multilabel_metrics,
    to_original_space,
)
from genretune.model.prepare import PreparedData

# Activations of a 256-track batch at base 128 and 64x128 input take GBs; 64 keeps evaluation's
# working memory near training's.
EVAL_BATCH = 64


@torch.no_grad()
def predict_proba(
    model: nn.Module,
    feeder: FeatureFeeder,
    idx: np.ndarray,
    runtime: Runtime,
    batch_size: int = EVAL_BATCH,
) -> np.ndarray:
    """(len(idx), n_kept) float32 probabilities."""
    model.eval()
    out = []
    rows = feeder.rows(idx)
    for number, (_, x) in enumerate(feeder.batches(rows, batch_size), start=1):
        with torch.autocast(runtime.torch_device.type, torch.bfloat16, enabled=runtime.amp):
            logits = model(x)
        out.append(torch.sigmoid(logits.float()))  # kept on the device: one copy per pass
        release_freed_heap(number)
    if not out:
        return np.zeros((0, 0), dtype=np.float32)
    return torch.cat(out).cpu().numpy()


def original_space_scores(prepared: PreparedData, prob_kept: np.ndarray) -> np.ndarray:
    """Kept-genre probabilities scattered into all original genres (removed genres score 0)."""
    return to_original_space(prob_kept, prepared.kept_idx, prepared.dataset.n_genres)


def split_metrics(
    prepared: PreparedData, idx: np.ndarray, prob_kept: np.ndarray, rule: DecisionRule, prefix: str
) -> dict[str, float]:
    """`{prefix}_f1`, ... in the original label space, plus `{prefix}_f1_kept` and PR-AUC.

    Original space: every track of the split, all genres; removed genres are never predicted, so
    trials that keep different genre sets are comparable. Kept space: the tracks that carry a kept
    genre, kept genres only (what the hand-run log measured after filtering).
    """
    y_true = prepared.dataset.labels[idx]
    kept_mask = prepared.genre_filter.kept_mask
    pred = rule.apply(original_space_scores(prepared, prob_kept), allowed=kept_mask)
    metrics = {f"{prefix}_{k}": v for k, v in multilabel_metrics(y_true, pred).items()}
    thirds = prepared.dataset.frequency_thirds()
    coverage = coverage_metrics(y_true, pred, kept_mask, thirds)
    metrics.update({f"{prefix}_{k}": v for k, v in coverage.items()})
    y_kept = y_true[:, prepared.kept_idx]
    rows = y_kept.any(axis=1)
    kept = multilabel_metrics(y_kept[rows], pred[:, prepared.kept_idx][rows])
    metrics.update({f"{prefix}_{k}_kept": v for k, v in kept.items() if k != "hamming_loss"})
    metrics[f"{prefix}_pr_auc_macro"] = macro_pr_auc(y_kept, prob_kept)
    return metrics


def tuned_rule_metrics(prepared: PreparedData, prob_kept: np.ndarray) -> dict[str, float]:
    """The validation-optimal decision rule of the sweep: tuned_threshold/top_k/val_f1.

    A pure top-K rule reports threshold 0.0 (every probability passes) and a pure threshold rule
    top_k 0 (no cut), so the keys stay numeric in every trial's results.
    """
    y_true = prepared.dataset.labels[prepared.val_idx]
    sweep = sweep_decision_rules(
        y_true,
        original_space_scores(prepared, prob_kept),
        allowed=prepared.genre_filter.kept_mask,
    )
    best = sweep["best"]["overall"]
    return {
        "tuned_threshold": float(best.get("threshold") or 0.0),
        "tuned_top_k": int(best.get("top_k") or 0),
        "tuned_val_f1": float(best["f1"]),
    }
