"""The metric keys an epoch reports and which way each is better: torch-free, so readers of
an experiment (results, export, the loader) need not import the training stack."""

from __future__ import annotations

from genretune.model.metrics import COVERAGE_NAMES, METRIC_NAMES

__all__ = ["REPORTED_METRICS", "RUNNING_MAXIMA", "natural_mode"]

# Reported metrics that are a trial's best value so far: they never go down from one epoch to
# the next (a scheduler may take a trial's value as a lower bound of its later ones).
RUNNING_MAXIMA = ("best_val_f1", "best_tuned_val_f1", "best_val_f1_macro")


def _reported_metrics() -> tuple[str, ...]:
    split = [f"val_{name}" for name in METRIC_NAMES]
    kept = [f"val_{name}_kept" for name in METRIC_NAMES if name != "hamming_loss"]
    coverage = [f"val_{name}" for name in COVERAGE_NAMES]
    return (
        *split,
        *kept,
        *coverage,
        "val_pr_auc_macro",
        "tuned_threshold",
        "tuned_top_k",
        "tuned_val_f1",
        "epoch",
        "train_loss",
        "n_genres",
        "n_train",
        *RUNNING_MAXIMA,
        "epochs_since_best",
        "epoch_seconds",
    )


# Every metric key an epoch of `fit` reports (to `genretune train`'s history, and through the
# trainable to Ray Tune); names are an interface: results, export and --metric read them.
REPORTED_METRICS = _reported_metrics()


def natural_mode(metric: str) -> str:
    """The direction in which a reported metric is better: min for a loss or a duration
    (val_hamming_loss, train_loss, epoch_seconds, Ray's time_total_s), max for every other
    (F1s, precision, recall, coverage, PR-AUC)."""
    return "min" if metric.removeprefix("best_").endswith(("loss", "seconds", "_s")) else "max"
