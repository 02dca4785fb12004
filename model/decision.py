"""Decision rules and the hand-run log's threshold / top-K sweep (tune_model_threshold.py).

A prediction is positive when its probability is >= threshold; top-K keeps the K highest
probabilities of a track (ties: lower genre index first); combined = both.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genretune.model.metrics import multilabel_metrics

THRESHOLDS: tuple[float, ...] = tuple(round(0.30 + 0.05 * i, 2) for i in range(11))
TOP_KS: tuple[int, ...] = (3, 5, 7, 10, 15, 20)
STRATEGIES = ("threshold_only", "top_k", "combined")
RESULTS_FILE = "threshold_tuning_results.json"


def topk_ranks(y_score: np.ndarray, allowed: np.ndarray | None = None) -> np.ndarray:
    """(N, G) rank of each genre within its track (0 = most probable; ties: lower index first).

    Genres outside `allowed` rank after every allowed genre, so they never take a top-K slot.
    """
    # Negation is exact in any float width, so float32 scores keep their order (and ties).
    score = np.negative(y_score, dtype=np.result_type(y_score.dtype, np.float32))
    if allowed is not None:
        score[:, ~allowed] = np.inf
    order = np.argsort(score, axis=1, kind="stable")
    # The smallest integer type that holds a rank: this runs on every validation epoch.
    ranks = np.empty(order.shape, dtype=np.min_scalar_type(max(score.shape[1] - 1, 0)))
    rows = np.arange(score.shape[0])[:, None]
    ranks[rows, order] = np.arange(score.shape[1])[None, :]
    return ranks


def apply_threshold(y_score: np.ndarray, threshold: float) -> np.ndarray:
    return y_score >= threshold


def apply_topk(y_score: np.ndarray, k: int, allowed: np.ndarray | None = None) -> np.ndarray:
    pred = topk_ranks(y_score, allowed) < k
    return pred if allowed is None else pred & allowed[None, :]


def apply_rule(
    y_score: np.ndarray,
    threshold: float | None,
    top_k: int | None,
    allowed: np.ndarray | None = None,
) -> np.ndarray:
    pred = np.ones(y_score.shape, dtype=bool)
    if threshold is not None:
        pred &= apply_threshold(y_score, threshold)
    if top_k is not None:
        pred &= apply_topk(y_score, top_k, allowed)
    if allowed is not None:
        pred &= allowed[None, :]
    return pred


@dataclass(frozen=True)
class DecisionRule:
    threshold: float | None = 0.5
    top_k: int | None = None

    def __post_init__(self) -> None:
        if self.threshold is None and self.top_k is None:
            raise ValueError("a decision rule needs a threshold, a top_k or both")
        if self.threshold is not None and not 0 <= self.threshold <= 1:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold}")
        if self.top_k is not None and (isinstance(self.top_k, bool) or self.top_k < 1):
            raise ValueError(f"top_k must be an integer >= 1, got {self.top_k}")

    def apply(self, y_score: np.ndarray, allowed: np.ndarray | None = None) -> np.ndarray:
        return apply_rule(y_score, self.threshold, self.top_k, allowed)

    def describe(self) -> str:
        parts = []
        if self.threshold is not None:
            parts.append(f"threshold {self.threshold:.2f}")
        if self.top_k is not None:
            parts.append(f"top-{self.top_k}")
        return " + ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "top_k": self.top_k}


def _best(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    # max() keeps the first of equal F1s, as the contract asks.
    return dict(max(rows, key=lambda r: r["f1"])) if rows else None


def sweep_decision_rules(
    y_true: np.ndarray, y_score: np.ndarray, allowed: np.ndarray | None = None
) -> dict[str, Any]:
    """Every threshold, top-K and (threshold, top-K) rule scored on (y_true, y_score)."""
    n_allowed = y_score.shape[1] if allowed is None else int(allowed.sum())
    ranks = topk_ranks(y_score, allowed)
    allowed_row = np.ones(y_score.shape[1], bool) if allowed is None else allowed
    top = {k: (ranks < k) & allowed_row[None, :] for k in TOP_KS if k <= n_allowed}
    result: dict[str, Any] = {
        "threshold_only": [],
        "top_k": [{"top_k": k, **multilabel_metrics(y_true, pred)} for k, pred in top.items()],
        "combined": [],
    }
    for t in THRESHOLDS:  # one threshold's predictions at a time: the sweep runs every epoch
        above = (y_score >= t) & allowed_row[None, :]
        result["threshold_only"].append({"threshold": t, **multilabel_metrics(y_true, above)})
        result["combined"] += [
            {"threshold": t, "top_k": k, **multilabel_metrics(y_true, above & pred)}
            for k, pred in top.items()
        ]
    best = {s: _best(result[s]) for s in STRATEGIES}
    overall_strategy = max(
        (s for s in STRATEGIES if best[s] is not None), key=lambda s: best[s]["f1"]
    )
    best["overall"] = {**best[overall_strategy], "strategy": overall_strategy}
    result["best"] = best
    return result


def rule_from_best(entry: dict[str, Any]) -> DecisionRule:
    return DecisionRule(threshold=entry.get("threshold"), top_k=entry.get("top_k"))


def load_tuning_results(path: str | Path) -> dict[str, Any]:
    """A threshold_tuning_results.json, checked for the structure this module writes."""
    path = Path(path)
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError, IsADirectoryError) as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(result, dict) or not all(isinstance(result.get(s), list) for s in STRATEGIES):
        raise ValueError(f"{path}: not threshold tuning results (missing {', '.join(STRATEGIES)})")
    best = result.get("best")
    overall = best.get("overall") if isinstance(best, dict) else None
    if not isinstance(overall, dict) or "f1" not in overall:
        raise ValueError(f"{path}: has no best.overall entry")
    try:
        rule_from_best(overall)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: best.overall is not a valid rule ({exc})") from None
    return result


def write_tuning_results(result: dict[str, Any], out_dir: str | Path) -> Path:
    path = Path(out_dir) / RESULTS_FILE
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return path


def plot_tuning_results(result: dict[str, Any], path: str | Path) -> Path:
    """F1 / precision / recall vs threshold and vs K, best points marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_k) = plt.subplots(1, 2, figsize=(11, 4.5), dpi=120)
    panels = ((ax_t, "threshold_only", "threshold", "Threshold"), (ax_k, "top_k", "top_k", "K"))
    for ax, strategy, key, label in panels:
        rows = result[strategy]
        if not rows:
            ax.text(0.5, 0.5, "no top-K value fits the genre count", ha="center", va="center")
            ax.set_axis_off()
            continue
        x = [r[key] for r in rows]
        for metric in ("f1", "precision", "recall"):
            ax.plot(x, [r[metric] for r in rows], marker="o", label=metric)
        best = result["best"][strategy]
        ax.scatter(
            [best[key]],
            [best["f1"]],
            s=160,
            facecolors="none",
            edgecolors="black",
            zorder=5,
            label=f"best F1 {best['f1']:.3f} at {label} {best[key]}",
        )
        ax.set_xlabel(label)
        ax.set_ylabel("score (micro-averaged)")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    ax_t.set_title("Threshold only")
    ax_k.set_title("Top-K only")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)
