"""The learning-curve bank: every epoch of many demo-profile trainings, under every decision rule.

One compact .npz file. Per run (a configuration of the training knobs trained with one training
seed) and epoch it holds the validation and test micro-F1 in the original label space for every
decision rule of RULES, the validation-optimal (tuned) rule, validation PR-AUC, the epoch's
seconds and training loss; `provenance` says how it was recorded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from genretune.model.decision import THRESHOLDS, TOP_KS, topk_ranks
from genretune.model.metrics import multilabel_metrics
from genretune.search.space import DECISION_KEYS, TOP_K_CHOICES

Rule = tuple[float | None, int | None]  # (threshold, top_k); None = not applied

# Every (threshold, top-K) the default search space can draw (threshold 0.30..0.80 x top-K
# none/3/../20), then the top-K-only rules that the validation sweep also considers.
RULES: tuple[Rule, ...] = tuple((t, k) for t in THRESHOLDS for k in TOP_K_CHOICES) + tuple(
    (None, k) for k in TOP_KS
)
RULE_INDEX = {rule: i for i, rule in enumerate(RULES)}

DEFAULT_PATH = Path(__file__).resolve().parents[1] / "data" / "curve_bank.npz"
_ARRAYS = (
    "knobs",
    "train_seed",
    "design",
    "val_f1",
    "test_f1",
    "tuned_rule",
    "val_pr_auc",
    "epoch_seconds",
    "train_loss",
    "n_genres",
)


def rule_index(threshold: float | None, top_k: int | None) -> int:
    """The RULES index of a config's decision rule (thresholds compared to 2 decimals)."""
    key = (None if threshold is None else round(float(threshold), 2), top_k)
    try:
        return RULE_INDEX[key]
    except KeyError:
        raise KeyError(f"rule threshold={threshold} top_k={top_k} is not in the bank") from None


def tuned_rule_index(tuned_threshold: float, tuned_top_k: int) -> int:
    """RULES index of the tuned rule as the training loop reports it (0 = not applied)."""
    return rule_index(tuned_threshold or None, tuned_top_k or None)


def rule_f1(y_true: np.ndarray, scores: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """Micro-F1 of every rule of RULES, each applied as a trial applies its decision rule."""
    ranks = topk_ranks(scores, allowed)
    top = {k: (ranks < k) & allowed[None, :] for k in TOP_KS}
    out = np.empty(len(RULES))
    for i, (threshold, k) in enumerate(RULES):
        pred = allowed[None, :] if threshold is None else (scores >= threshold) & allowed[None, :]
        if k is not None:
            pred = pred & top[k]
        out[i] = multilabel_metrics(y_true, np.broadcast_to(pred, y_true.shape))["f1"]
    return out


@dataclass(frozen=True)
class CurveBank:
    knob_names: tuple[str, ...]
    knobs: np.ndarray  # (R, K) the training knobs of each run, in knob_names order
    train_seed: np.ndarray  # (R,)
    design: np.ndarray  # (R,) "baseline", "near" (around the baseline) or "sobol"
    val_f1: np.ndarray  # (R, E, len(RULES))
    test_f1: np.ndarray  # (R, E, len(RULES))
    tuned_rule: np.ndarray  # (R, E) RULES index of the validation-optimal rule
    val_pr_auc: np.ndarray  # (R, E)
    epoch_seconds: np.ndarray  # (R, E)
    train_loss: np.ndarray  # (R, E)
    n_genres: np.ndarray  # (R,) genres the filter kept
    genre_counts: np.ndarray  # (G,) tracks per genre, whole dataset (what the filter counts)
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def n_runs(self) -> int:
        return len(self.knobs)

    @property
    def epochs(self) -> int:
        return self.val_f1.shape[1]

    def knob_dict(self, run: int) -> dict[str, Any]:
        values = {}
        for name, value in zip(self.knob_names, self.knobs[run], strict=True):
            values[name] = int(value) if name in INT_KNOBS else float(value)
        return values

    def baseline_runs(self) -> np.ndarray:
        return np.flatnonzero(self.design == "baseline")

    def runs_of(self, knobs: dict[str, Any]) -> np.ndarray:
        """Runs recorded with exactly these training knobs (any training seed)."""
        target = np.array([float(knobs[name]) for name in self.knob_names])
        close = np.isclose(self.knobs, target[None, :], rtol=1e-9, atol=0)
        return np.flatnonzero(close.all(axis=1))

    def save(self, path: Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        meta = {**self.provenance, "knob_names": list(self.knob_names), "rules": RULES}
        np.savez_compressed(
            tmp,
            **{name: getattr(self, name) for name in _ARRAYS},
            genre_counts=self.genre_counts,
            meta=np.array(json.dumps(meta)),
        )
        tmp.replace(path)
        return path


INT_KNOBS = ("min_samples_per_genre", "base_channels")


def load_bank(path: Path = DEFAULT_PATH) -> CurveBank:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no curve bank (record one: benchmarks/curve_bank.py)")
    with np.load(path, allow_pickle=False) as npz:
        meta = json.loads(str(npz["meta"]))
        rules = [tuple(r) for r in meta.pop("rules")]
        if rules != list(RULES):
            raise ValueError(f"{path}: recorded with other decision rules than this code's")
        knob_names = tuple(meta.pop("knob_names"))
        arrays = {name: npz[name] for name in _ARRAYS}
        return CurveBank(
            knob_names=knob_names,
            genre_counts=npz["genre_counts"],
            provenance=meta,
            **arrays,
        )


def training_knobs(space_keys) -> tuple[str, ...]:
    """The searched keys that change training (the decision rule does not)."""
    return tuple(k for k in space_keys if k not in DECISION_KEYS)
