"""Export a trial's complete config (with provenance) for `genretune train --config`, and
optionally its best weights as a model dir that `genretune tune-threshold` accepts."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from genretune.output_files import Outputs, atomic_outputs
from genretune.results import experiment_dir as layout
from genretune.results.experiment import Experiment, read_json_object

MODEL_KEYS = ("model.pt", "config.json")


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return None if isinstance(value, float) and value != value else value
    if pd.isna(value):
        return None
    return value.item() if hasattr(value, "item") else value


def chosen_trial(
    exp: Experiment, trial_id: str | None, metric: str | None, mode: str | None
) -> pd.Series:
    return exp.trial(trial_id) if trial_id else exp.best(metric, mode)


def trial_config(exp: Experiment, trial_id: str) -> dict[str, Any]:
    from genretune.model.config import FLAT_KEYS

    params = read_json_object(exp.path / layout.trial_dir_name(trial_id) / "params.json")
    return {k: params[k] for k in FLAT_KEYS if k in params}


def trial_runtime(exp: Experiment, trial_id: str) -> dict[str, Any]:
    """The device a trial trained on and its torch threads (one per CPU it was given)."""
    cpus = exp.settings.get("resources", {}).get("cpus_per_trial", 1)
    rows = exp.history[exp.history["trial_id"] == trial_id]
    device = rows["device"].iloc[-1] if "device" in rows and len(rows) else "cpu"
    return {"device": str(device), "threads": max(1, int(cpus))}


def best_epoch_rule(exp: Experiment, row: pd.Series, config: dict[str, Any]) -> dict[str, Any]:
    """The decision rule of a trial's best epoch: the rule tuned on validation at that epoch
    (`--decision tuned`: a threshold of 0 or a top-K of 0 means that part is off), else the
    trial's searched or configured threshold and top-K."""
    if exp.settings.get("decision") == "tuned" and pd.notna(row.get("best_tuned_threshold")):
        threshold = float(row["best_tuned_threshold"])
        top_k = int(row.get("best_tuned_top_k") or 0)
        return {
            "threshold": threshold or None,
            "top_k": top_k or None,
            "fitted_on": "val",
            "f1": _plain(row.get("best_tuned_val_f1")),
        }
    return {"threshold": config.get("threshold"), "top_k": config.get("top_k")}


def export_payload(exp: Experiment, row: pd.Series, metric: str) -> dict[str, Any]:
    from genretune.model.versions import SEARCH_PACKAGES, package_versions

    config = trial_config(exp, row["trial_id"])
    metrics = {k: _plain(v) for k, v in row.items() if k.startswith(("best_", "last_"))}
    return {
        "config": config,
        # What `genretune train --config` needs to repeat the trial epoch for epoch.
        "runtime": trial_runtime(exp, row["trial_id"]),
        "provenance": {
            "experiment": str(exp.path),
            "trial_id": row["trial_id"],
            "selected_by": metric,
            "end_reason": row.get("end_reason"),
            "best_epoch": _plain(row.get("best_epoch")),
            "best_epoch_decision_rule": best_epoch_rule(exp, row, config),
            "epochs_run": _plain(row.get("epochs")),
            "metrics": metrics,
            "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "versions": package_versions(SEARCH_PACKAGES),
        },
    }


def write_model_dir(
    exp: Experiment,
    payload: dict[str, Any],
    out_dir: Path,
    outputs: Outputs | None = None,
    flag: str = "--with-checkpoint",
) -> Path:
    """A model dir of the exported trial's best-epoch weights, as `genretune train` writes
    one (model.pt and its model card, which also carries the export's provenance and
    runtime): `genretune predict` and `genretune.load_model` read it. Staged in `outputs`
    (renamed into `out_dir` with the command's other outputs, all or nothing); without
    `outputs`, written atomically on its own. The card's genres come from the trial's data,
    which must be readable here."""
    # torch and the data: only when weights are written
    from genretune.data import load_dataset
    from genretune.model.artifacts import write_model_files
    from genretune.model.config import config_from_flat
    from genretune.model.model_card import card_of
    from genretune.model.prepare import prepare_data
    from genretune.results.checkpoints import latest_state

    if outputs is None:
        with atomic_outputs() as own:
            return write_model_dir(exp, payload, out_dir, own, flag)
    provenance = payload["provenance"]
    state = latest_state(exp.path / layout.trial_dir_name(provenance["trial_id"]))
    cfg = config_from_flat(payload["config"])
    prepared = prepare_data(load_dataset(cfg.data), cfg.filter, cfg.loss)
    rule = {**provenance["best_epoch_decision_rule"], "epoch": provenance.get("best_epoch")}
    card = card_of(
        cfg,
        prepared,
        rule=rule,
        configured_rule={"threshold": cfg.decision.threshold, "top_k": cfg.decision.top_k},
        device=payload["runtime"]["device"],
        experiment_name=exp.path.name,
        provenance=provenance,
        runtime=payload["runtime"],
    )
    with outputs.directory(out_dir, flag) as staging:
        write_model_files(staging, card, state["best_model"])
    return out_dir


def best_trial_decision_plot(exp: Experiment, path: Path) -> Path:
    """Threshold / top-K curves of the best trial's best weights on validation, written to
    `path` as it is (write_plots gives a path in its staging directory)."""
    from genretune.model.config import config_from_flat
    from genretune.model.decision import plot_tuning_results, sweep_decision_rules
    from genretune.model.device import resolve_runtime
    from genretune.model.threshold_tuning import allowed_genres, predictions_from_weights

    row = exp.best()
    cfg = config_from_flat(trial_config(exp, row["trial_id"]))
    from genretune.results.checkpoints import latest_state

    state = latest_state(exp.path / layout.trial_dir_name(row["trial_id"]))
    preds = predictions_from_weights(cfg, state["best_model"], resolve_runtime("cpu"), str(path))
    y_true, y_score = preds["val"]
    sweep = sweep_decision_rules(y_true, y_score, allowed=allowed_genres(y_score))
    return plot_tuning_results(sweep, path)
