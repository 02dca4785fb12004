"""A standalone run (`genretune train`): the training loop driven directly, then a model dir
with a test report.

The test split is used only here, after training, with a decision rule chosen without it (the
configured rule, and the sweep's best rule fitted on validation).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genretune.data import load_dataset
from genretune.errors import BadValue
from genretune.model import artifacts
from genretune.model.config import TrainConfig
from genretune.model.decision import (
    DecisionRule,
    plot_tuning_results,
    rule_from_best,
    sweep_decision_rules,
    write_tuning_results,
)
from genretune.model.device import FeatureFeeder, Runtime
from genretune.model.evaluation import original_space_scores, predict_proba, split_metrics
from genretune.model.model_card import card_of
from genretune.model.network import count_parameters
from genretune.model.prepare import PreparedData, prepare_data
from genretune.model.training import EpochReport, FitResult, decision_rule, fit


@dataclass(frozen=True)
class TrainOutcome:
    run_dir: Path
    metrics: dict[str, Any]


def evaluation_report(
    prepared: PreparedData, fitted: FitResult, rule: DecisionRule, runtime: Runtime
) -> tuple[dict[str, Any], dict[str, Any], dict[str, np.ndarray]]:
    """(metrics.json payload, sweep, original-space scores per split) for a trained model."""
    feeder = FeatureFeeder(prepared.dataset.features, runtime)
    probs = {
        "val": predict_proba(fitted.model, feeder, prepared.val_idx, runtime),
        "test": predict_proba(fitted.model, feeder, prepared.test_idx, runtime),
    }
    idx = {"val": prepared.val_idx, "test": prepared.test_idx}
    sweep = sweep_decision_rules(
        prepared.dataset.labels[prepared.val_idx],
        original_space_scores(prepared, probs["val"]),
        allowed=prepared.genre_filter.kept_mask,
    )
    tuned = rule_from_best(sweep["best"]["overall"])
    report: dict[str, Any] = {
        "best_epoch": fitted.best_epoch,
        "epochs_run": len(fitted.history),
        "stop_reason": fitted.stop_reason,
        "decision_rule": rule.to_dict(),
        "tuned_decision_rule": {**tuned.to_dict(), "fitted_on": "val"},
    }
    for split in ("val", "test"):
        if len(idx[split]) == 0:
            continue
        report[split] = split_metrics(prepared, idx[split], probs[split], rule, split)
        report[f"{split}_tuned_rule"] = split_metrics(
            prepared, idx[split], probs[split], tuned, split
        )
    scores = {split: original_space_scores(prepared, probs[split]) for split in probs}
    return report, sweep, scores


def prepare_run(cfg: TrainConfig) -> PreparedData:
    """The dataset as the run sees it (filter, class weights), checked against the rule."""
    prepared = prepare_data(load_dataset(cfg.data), cfg.filter, cfg.loss)
    n_kept = prepared.genre_filter.n_kept
    if cfg.decision.top_k is not None and cfg.decision.top_k > n_kept:
        raise BadValue("top_k", f" {cfg.decision.top_k} is above the {n_kept} genres kept")
    return prepared


def train_run(
    prepared: PreparedData,
    cfg: TrainConfig,
    runtime: Runtime,
    output_dir: Path,
    experiment_name: str,
    on_epoch: Callable[[EpochReport], None] | None = None,
) -> TrainOutcome:
    """Train, evaluate on validation and test, and write the model dir."""
    rule = decision_rule(cfg)
    fitted = fit(prepared, cfg, runtime, on_epoch=on_epoch)
    report, sweep, scores = evaluation_report(prepared, fitted, rule, runtime)
    report["n_parameters"] = count_parameters(fitted.model)

    # Written only now, complete or not at all: an interrupted or failed run (Ctrl-C, a full
    # disk) leaves no model dir, nor a partial one, behind.
    def write(staging: Path) -> None:
        _write_model_dir(staging, cfg, prepared, runtime, fitted, report, sweep, scores,
                         experiment_name)  # fmt: skip

    run_dir = artifacts.write_run_dir(output_dir, experiment_name, write)
    return TrainOutcome(run_dir=run_dir, metrics=report)


def _write_model_dir(
    run_dir, cfg, prepared, runtime, fitted, report, sweep, scores, experiment_name
) -> None:
    dataset = prepared.dataset
    for split, score in scores.items():
        idx = prepared.val_idx if split == "val" else prepared.test_idx
        artifacts.save_predictions(run_dir, split, dataset.labels[idx], score)
    write_tuning_results(sweep, run_dir)
    plot_tuning_results(sweep, run_dir / "threshold_tuning_plots.png")
    tuned = report["tuned_decision_rule"]
    card = card_of(
        cfg,
        prepared,
        # What predict applies: the rule tuned on validation for the weights saved here
        # (the best epoch's), as the test report's `test_tuned_rule` measures it.
        rule={
            "threshold": tuned["threshold"],
            "top_k": tuned["top_k"],
            "fitted_on": "val",
            "epoch": fitted.best_epoch,
        },
        configured_rule=report["decision_rule"],
        device=runtime.device,
        experiment_name=experiment_name,
    )
    artifacts.write_history(run_dir / artifacts.HISTORY_FILE, fitted.history)
    artifacts.write_json(run_dir / artifacts.METRICS_FILE, report)
    artifacts.write_model_files(run_dir, card, fitted.model.state_dict())
