"""The multilabel metrics, vectorised; they equal scikit-learn's (zero_division=0).

F1, precision and recall are micro-averaged, Jaccard is sample-averaged, Hamming loss is the
usual one and avg_predictions is the mean number of predicted genres per track.
"""

from __future__ import annotations

import numpy as np

METRIC_NAMES = ("f1", "precision", "recall", "hamming_loss", "jaccard", "avg_predictions")
COVERAGE_NAMES = (
    "f1_macro",
    "coverage",
    "label_coverage",
    "f1_macro_rare",
    "f1_macro_middle",
    "f1_macro_common",
)


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den > 0 else 0.0


def multilabel_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """The METRIC_NAMES of binary (N, G) truth and predictions."""
    if y_true.shape != y_pred.shape or y_true.ndim != 2:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} must both be (N, G)")
    if y_true.shape[0] == 0:
        raise ValueError("cannot compute metrics of 0 tracks")
    t = y_true.astype(bool)
    p = y_pred.astype(bool)
    tp_row = (t & p).sum(axis=1)
    true_row, pred_row = t.sum(axis=1), p.sum(axis=1)
    tp, n_true, n_pred = int(tp_row.sum()), int(true_row.sum()), int(pred_row.sum())
    precision, recall = _ratio(tp, n_pred), _ratio(tp, n_true)
    union = true_row + pred_row - tp_row
    # sklearn's samples-Jaccard with zero_division=0 scores a row with empty truth and empty
    # prediction as 0.
    jaccard = np.divide(tp_row, union, out=np.zeros(len(union)), where=union > 0)
    return {
        "f1": _ratio(2 * tp, n_true + n_pred),
        "precision": precision,
        "recall": recall,
        "hamming_loss": float((t != p).mean()),
        "jaccard": float(jaccard.mean()),
        "avg_predictions": float(pred_row.mean()),
    }


def per_genre_f1(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """(G,) F1 of each genre column; a genre with no positives and no predictions scores 0
    (scikit-learn's zero_division=0), so a dropped or never-predicted genre counts as 0."""
    t, p = y_true.astype(bool), y_pred.astype(bool)
    tp = (t & p).sum(axis=0)
    denominator = t.sum(axis=0) + p.sum(axis=0)
    return np.divide(2 * tp, denominator, out=np.zeros(t.shape[1]), where=denominator > 0)


def coverage_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, kept_mask: np.ndarray, thirds: tuple
) -> dict[str, float]:
    """Macro-F1 over every genre of the dataset, the share of genres the model can predict
    and of the split's labels they carry, and macro-F1 within each frequency third."""
    f1 = per_genre_f1(y_true, y_pred)
    labels = y_true.sum()
    out = {
        "f1_macro": float(f1.mean()),
        "coverage": float(kept_mask.mean()),
        "label_coverage": float(y_true[:, kept_mask].sum() / labels) if labels else 0.0,
    }
    for name, genres in zip(("rare", "middle", "common"), thirds, strict=True):
        out[f"f1_macro_{name}"] = float(f1[genres].mean()) if len(genres) else 0.0
    return out


def macro_pr_auc(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Mean average precision over genres with at least one positive (NaN if none has)."""
    from sklearn.metrics import average_precision_score

    cols = np.flatnonzero(y_true.sum(axis=0) > 0)
    if len(cols) == 0:
        return float("nan")
    return float(np.mean([average_precision_score(y_true[:, c], y_score[:, c]) for c in cols]))


def to_original_space(
    kept_values: np.ndarray, kept_idx: np.ndarray, n_genres: int, fill: float = 0
) -> np.ndarray:
    """(N, K) columns of the kept genres placed into (N, n_genres), `fill` elsewhere."""
    out = np.full((kept_values.shape[0], n_genres), fill, dtype=kept_values.dtype)
    out[:, kept_idx] = kept_values
    return out
