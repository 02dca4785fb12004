"""`genretune train`: the training loop driven directly, writing a model dir with a test report.

The test split is used only here, after training, with a decision rule chosen without it (the
configured rule, and the sweep's best rule fitted on validation).
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from genretune.data import InputError, load_dataset
from genretune.data.report import dataset_report
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
from genretune.model.network import count_parameters
from genretune.model.pos_weight import describe_pos_weight
from genretune.model.prepare import PreparedData, prepare_data
from genretune.model.training import EpochReport, FitResult, decision_rule, fit


@dataclass(frozen=True)
class TrainOutcome:
    run_dir: Path
    metrics: dict[str, Any]


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


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


def train_and_report(
    cfg: TrainConfig,
    runtime: Runtime,
    output_dir: Path,
    experiment_name: str,
    debug: bool = False,
    progress: bool = True,
) -> TrainOutcome:
    dataset = load_dataset(cfg.data)
    prepared = prepare_data(dataset, cfg.filter, cfg.loss)
    n_kept = prepared.genre_filter.n_kept
    if cfg.decision.top_k is not None and cfg.decision.top_k > n_kept:
        raise InputError(f"--top-k {cfg.decision.top_k} is above the {n_kept} genres kept")
    _log(dataset_report(dataset, prepared.genre_filter))
    if debug:
        _log(describe_pos_weight(prepared.pos_weight, prepared.genre_filter.kept_genres))
    rule = decision_rule(cfg)
    _log(
        f"\nTraining on {len(prepared.train_idx):,} tracks, {prepared.genre_filter.n_kept} "
        f"genres, device {runtime.device}; the model dir goes to {output_dir} when done"
    )

    bar = tqdm(total=cfg.optim.epochs, unit="epoch", disable=not progress, file=sys.stderr)

    def on_epoch(report: EpochReport) -> None:
        m = report.metrics
        bar.set_postfix(
            loss=f"{m['train_loss']:.3f}",
            val_f1=f"{m['val_f1']:.3f}",
            best=f"{m['best_val_f1']:.3f}",
            preds=f"{m['val_avg_predictions']:.1f}",
        )
        bar.update(1)

    try:
        fitted = fit(prepared, cfg, runtime, on_epoch=on_epoch)
    finally:
        bar.close()
    report, sweep, scores = evaluation_report(prepared, fitted, rule, runtime)
    report["n_parameters"] = count_parameters(fitted.model)
    # Created only now: an interrupted or failed run leaves no empty model dir behind.
    run_dir = artifacts.new_run_dir(output_dir, experiment_name)
    try:
        _write_model_dir(run_dir, cfg, dataset, prepared, runtime, fitted, report, sweep, scores,
                         experiment_name)  # fmt: skip
    except BaseException:
        shutil.rmtree(run_dir, ignore_errors=True)
        raise
    return TrainOutcome(run_dir=run_dir, metrics=report)


def _write_model_dir(
    run_dir, cfg, dataset, prepared, runtime, fitted, report, sweep, scores, experiment_name
) -> None:
    for split, score in scores.items():
        idx = prepared.val_idx if split == "val" else prepared.test_idx
        artifacts.save_predictions(run_dir, split, dataset.labels[idx], score)
    write_tuning_results(sweep, run_dir)
    plot_tuning_results(sweep, run_dir / "threshold_tuning_plots.png")
    artifacts.write_json(
        run_dir / artifacts.CONFIG_FILE,
        {
            "config": cfg.to_flat(),
            "experiment_name": experiment_name,
            "genres": list(dataset.genres),
            "kept_genres": list(prepared.genre_filter.kept_genres),
            "kept_idx": prepared.kept_idx.tolist(),
            "input_shape": list(dataset.input_shape),
            "device": runtime.device,
            "versions": artifacts.package_versions(),
        },
    )
    artifacts.write_history(run_dir / artifacts.HISTORY_FILE, fitted.history)
    artifacts.write_json(run_dir / artifacts.METRICS_FILE, report)
    artifacts.save_weights(run_dir / artifacts.WEIGHTS_FILE, fitted.model)


def summary_lines(outcome: TrainOutcome) -> list[str]:
    m = outcome.metrics
    lines = [
        f"Best epoch {m['best_epoch']} of {m['epochs_run']} ({m['stop_reason']}); "
        f"rule {DecisionRule(**m['decision_rule']).describe()}",
    ]
    header = f"{'':22s}{'F1':>7s}{'Prec':>7s}{'Recall':>7s}{'Jacc':>7s}{'Hamm':>8s}{'Preds':>7s}"
    lines.append(header)
    for key, label in (
        ("val", "val"),
        ("test", "test"),
        ("val_tuned_rule", "val (tuned rule)"),
        ("test_tuned_rule", "test (tuned rule)"),
    ):
        if key not in m:
            continue
        s = key.split("_")[0]
        r = m[key]
        lines.append(
            f"{label:22s}{r[f'{s}_f1']:7.3f}{r[f'{s}_precision']:7.3f}{r[f'{s}_recall']:7.3f}"
            f"{r[f'{s}_jaccard']:7.3f}{r[f'{s}_hamming_loss']:8.4f}{r[f'{s}_avg_predictions']:7.2f}"
        )
    tuned = DecisionRule(**{k: v for k, v in m["tuned_decision_rule"].items() if k != "fitted_on"})
    lines.append(f"tuned rule (fitted on val): {tuned.describe()}")
    lines.append(f"model dir: {outcome.run_dir}")
    return lines
