"""A trained model dir, loaded for tagging new tracks: `genretune.load_model(dir)`.

    model = genretune.load_model("models/fma_20261207_101500")
    model.genres            # the genres it predicts, in its output order
    model.rule              # its decision rule (the best epoch's, tuned on validation)
    p = model.predict_proba(features)   # (N, len(genres)) float32
    tags = model.predict(features)      # (N, len(genres)) bool, by model.rule

`features` is (N, n_mels, frames) or one (n_mels, frames) clip, float16/32/64 (cast to float32),
an array or a memory map, cast a block of rows at a time. (`genretune predict` reads .npy files
a block at a time itself: data/npy_stream.py.) Weights are read with
`torch.load(weights_only=True)`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genretune.data import InputError
from genretune.errors import BadValue
from genretune.model import artifacts
from genretune.model.config import config_from_flat
from genretune.model.decision import DecisionRule
from genretune.model.device import FeatureFeeder, Runtime, resolve_runtime, trim_heap
from genretune.model.evaluation import EVAL_BATCH, predict_proba
from genretune.model.model_card import read_model_card
from genretune.model.training import build_model

# Rows read from the input per block: a multiple of the evaluation batch, so batches are the
# ones training's evaluation made; 84 MB of float32 at FMA's 128 x 1280. The batch's
# activations take more (about 1.5 GB at base 16 and 128 x 1280): `batch_size` trades them.
BLOCK_ROWS = EVAL_BATCH * 2


@dataclass(frozen=True)
class TunedModel:
    """A model dir's network, genres and decision rule (see the module docstring)."""

    path: Path
    genres: tuple[str, ...]  # the kept genres: the model's outputs, in order
    all_genres: tuple[str, ...]  # the training dataset's genres (the label space)
    rule: DecisionRule
    input_shape: tuple[int, int]
    card: dict[str, Any]  # config.json as read
    network: torch.nn.Module
    runtime: Runtime
    batch_size: int = EVAL_BATCH  # training's evaluation batch: its probabilities bit for bit

    @property
    def audio_settings(self) -> dict[str, Any] | None:
        """prepare-fma's log-mel settings of the training features, or None (not from audio)."""
        return self.card["features"].get("audio")

    def rule_for(self, threshold: float | None = None, top_k: int | None = None) -> DecisionRule:
        """The model's rule, or the one a threshold and/or top-K given here make."""
        if threshold is None and top_k is None:
            return self.rule
        if threshold is not None and not 0 <= threshold <= 1:
            raise BadValue("threshold", f" {threshold}: must be in [0, 1]")
        if top_k is not None and not 1 <= top_k <= len(self.genres):
            raise BadValue(
                "top_k", f" {top_k}: must be in [1, {len(self.genres)}] (the genres it predicts)"
            )
        return DecisionRule(threshold=threshold, top_k=top_k)

    @property
    def rows_per_block(self) -> int:
        return self.batch_size * max(1, BLOCK_ROWS // self.batch_size)  # whole batches

    def blocks(self, features: np.ndarray, what: str = "features") -> Iterator[np.ndarray]:
        """The input checked and cast, about BLOCK_ROWS rows at a time (float32)."""
        features = self.checked(features, what)
        for start in range(0, features.shape[0], self.rows_per_block):
            yield self.prepared_block(features[start : start + self.rows_per_block], start, what)

    def prepared_block(self, block: np.ndarray, start: int, what: str) -> np.ndarray:
        """A block of rows (the first is row `start` of the input) as float32, all finite."""
        block = np.asarray(block, dtype=np.float32)
        finite = np.isfinite(block).reshape(len(block), -1).all(axis=1)
        if not finite.all():
            raise InputError(
                f"{what}: NaN or inf in track {start + int(np.flatnonzero(~finite)[0])}"
            )
        return block

    def check_input(self, shape: tuple[int, ...], dtype: np.dtype, what: str) -> None:
        """An input of this shape and dtype is one the model takes (a clip alone: 2-D)."""
        if dtype.kind != "f":
            raise InputError(f"{what}: dtype {dtype}; features must be float16, float32 or float64")
        if len(shape) == 2:
            shape = (1, *shape)
        if len(shape) != 3 or tuple(shape[1:]) != self.input_shape:
            n_mels, frames = self.input_shape
            raise InputError(
                f"{what}: shape {tuple(shape)}; this model takes (N, {n_mels}, "
                f"{frames}) log-mels (N tracks of n_mels x frames)"
            )

    def checked(self, features: Any, what: str = "features") -> np.ndarray:
        if not isinstance(features, np.ndarray):
            features = np.asarray(features)
        self.check_input(features.shape, features.dtype, what)
        return features[None] if features.ndim == 2 else features

    def probabilities_of_block(self, block: np.ndarray) -> np.ndarray:
        feeder = FeatureFeeder(block, self.runtime)
        rows = np.arange(len(block))
        prob = predict_proba(self.network, feeder, rows, self.runtime, self.batch_size)
        # The block's activations were freed between small objects that live on (the output
        # rows): without a trim the heap keeps those pages, and a long input grows the process
        # by several MB per block (measured: 290 -> 380 MB over 2,048 tracks at batch 16).
        trim_heap()
        return prob

    def predict_proba(self, features: Any) -> np.ndarray:
        """(N, len(genres)) float32 probabilities."""
        out = [self.probabilities_of_block(b) for b in self.blocks(features)]
        if not out:
            return np.zeros((0, len(self.genres)), dtype=np.float32)
        return np.concatenate(out)

    def tags(self, prob: np.ndarray, rule: DecisionRule | None = None) -> np.ndarray:
        """(N, len(genres)) bool of probabilities by `rule` (the model's by default)."""
        return (rule or self.rule).apply(prob).astype(bool)

    def predict(
        self, features: Any, threshold: float | None = None, top_k: int | None = None
    ) -> np.ndarray:
        """(N, len(genres)) bool: the model's rule, or `threshold` and/or `top_k` if given."""
        return self.tags(self.predict_proba(features), self.rule_for(threshold, top_k))


def load_model(path: str | Path, device: str = "cpu", batch_size: int = EVAL_BATCH) -> TunedModel:
    """The model of a model dir written by `genretune train` (InputError if it is not one).
    `batch_size`: tracks per forward pass (smaller takes less memory)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise BadValue("batch_size", f" {batch_size}: must be an integer >= 1")
    path = Path(path)
    card = read_model_card(path)
    origin = str(path / artifacts.CONFIG_FILE)
    cfg = config_from_flat(card["config"], origin=origin)
    kept = tuple(card["kept_genres"])
    network = build_model(cfg, len(kept))
    weights = path / artifacts.WEIGHTS_FILE
    try:
        network.load_state_dict(artifacts.load_weights(weights))
    except RuntimeError:
        raise InputError(f"{weights}: the weights do not match {origin}") from None
    runtime = resolve_runtime(device)
    network.to(runtime.torch_device)
    if runtime.channels_last:
        network.to(memory_format=torch.channels_last)
    network.eval()
    rule = card["decision_rule"]
    try:
        decision = DecisionRule(threshold=rule["threshold"], top_k=rule["top_k"])
    except (ValueError, TypeError) as exc:
        raise InputError(f"{origin}: 'decision_rule' {rule}: {exc}") from None
    features = card["features"]
    return TunedModel(
        path=path,
        genres=kept,
        all_genres=tuple(card["genres"]),
        rule=decision,
        input_shape=(features["n_mels"], features["frames"]),
        card=card,
        network=network,
        runtime=runtime,
        batch_size=batch_size,
    )
