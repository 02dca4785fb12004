"""Threshold and top-K tuning of a trained model (the hand-run log's tune_model_threshold.py).

The sweep is fitted on validation predictions; with a model dir the chosen rules are then
reported on the test split, which never influences the choice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from genretune.data import InputError, load_dataset
from genretune.errors import BadValue
from genretune.model import artifacts
from genretune.model.config import TrainConfig, config_from_flat
from genretune.model.decision import (
    plot_tuning_results,
    rule_from_best,
    sweep_decision_rules,
    write_tuning_results,
)
from genretune.model.device import FeatureFeeder, Runtime
from genretune.model.evaluation import original_space_scores, predict_proba
from genretune.model.metrics import multilabel_metrics
from genretune.model.prepare import prepare_data
from genretune.model.training import build_model

STRATEGIES = ("threshold_only", "top_k", "combined")
TEST_REPORT_FILE = "threshold_tuning_test_report.json"


def predictions_from_weights(
    cfg: TrainConfig, state_dict: dict, runtime: Runtime, origin: str
) -> dict[str, tuple]:
    """(y_true, y_score) per split of a model rebuilt from its config and weights."""
    prepared = prepare_data(load_dataset(cfg.data), cfg.filter, cfg.loss)
    model = build_model(cfg, prepared.genre_filter.n_kept)
    try:
        model.load_state_dict(state_dict)
    except RuntimeError:
        raise InputError(f"{origin}: weights do not match the config") from None
    model.to(runtime.torch_device)
    feeder = FeatureFeeder(prepared.dataset.features, runtime)
    out = {}
    for split, idx in (("val", prepared.val_idx), ("test", prepared.test_idx)):
        prob = predict_proba(model, feeder, idx, runtime)
        out[split] = (prepared.dataset.labels[idx], original_space_scores(prepared, prob))
    return out


def _recompute_predictions(model_dir: Path, runtime: Runtime) -> dict[str, tuple]:
    """Predictions of a model dir that has weights and config but no saved predictions."""
    meta = artifacts.read_json_object(model_dir / artifacts.CONFIG_FILE, "model config")
    if "config" not in meta or not isinstance(meta["config"], dict):
        raise InputError(f"{model_dir / artifacts.CONFIG_FILE}: has no 'config' object")
    cfg = config_from_flat(meta["config"], origin=str(model_dir / artifacts.CONFIG_FILE))
    weights = model_dir / artifacts.WEIGHTS_FILE
    return predictions_from_weights(cfg, artifacts.load_weights(weights), runtime, str(weights))


def model_dir_predictions(model_dir: Path, runtime: Runtime) -> dict[str, tuple]:
    if not model_dir.is_dir():
        raise BadValue("model_dir", f" {model_dir}: directory not found")
    saved = {
        split: model_dir / artifacts.PREDICTIONS_FILE.format(split=split)
        for split in ("val", "test")
    }
    if saved["val"].is_file():
        return {s: artifacts.load_predictions(p) for s, p in saved.items() if p.is_file()}
    return _recompute_predictions(model_dir, runtime)


def allowed_genres(y_score: np.ndarray) -> np.ndarray:
    """Genres a filtered model can predict: removed genres have score 0 for every track."""
    allowed = (y_score > 0).any(axis=0)
    return allowed if allowed.any() else np.ones(y_score.shape[1], dtype=bool)


def tune(
    predictions: dict[str, tuple], output_dir: Path
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(sweep fitted on val, test report of each strategy's best rule or None)."""
    y_true, y_score = predictions["val"]
    allowed = allowed_genres(y_score)
    sweep = sweep_decision_rules(y_true, y_score, allowed=allowed)
    test_report = None
    if "test" in predictions:
        t_true, t_score = predictions["test"]
        test_report = {}
        for strategy in (*STRATEGIES, "overall"):
            best = sweep["best"][strategy]
            if best is None:
                continue
            rule = rule_from_best(best)
            test_report[strategy] = {
                "rule": rule.to_dict(),
                **multilabel_metrics(t_true, rule.apply(t_score, allowed=allowed)),
            }
    output_dir.mkdir(parents=True, exist_ok=True)
    write_tuning_results(sweep, output_dir)
    plot_tuning_results(sweep, output_dir / "threshold_tuning_plots.png")
    if test_report is not None:
        artifacts.write_json(output_dir / TEST_REPORT_FILE, test_report)
    return sweep, test_report
