"""What a model dir's config.json says about its model: everything `genretune predict` needs to
use it on new tracks, versioned.

- the training config (flat) and the dataset's genres, the genres the model kept (its outputs,
  in order) and their columns in the dataset's genre list;
- the decision rule predict applies (the best epoch's rule tuned on validation) and the rule
  the run was configured with;
- the input it expects: its shape and dtype, and for a feature dir made by `prepare-fma`, the
  exact log-mel settings, so audio given to predict becomes the same features;
- the versions of genretune and of the packages that wrote it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genretune.data import InputError
from genretune.errors import BadValue

FORMAT = "genretune-model"
FORMAT_VERSION = 2  # 1: written before model dirs were versioned (no rule, no feature settings)
PREPARE_FILE = "prepare.json"  # a prepare-fma feature dir's record of its settings
# Features are used as stored: log-mel power in dB (ref 1.0, top_db 80) for prepare-fma, the
# synthetic source's values otherwise; the network standardises its input itself (BatchNorm).
NORMALISATION = "none outside the network: its first layer (BatchNorm) standardises the input"
# What prepare-fma's values are (data/audio.py: log_mel), for a model trained on them.
AUDIO_VALUES = (
    "log-mel power in dB: 10*log10(max(mel, 1e-10)) with ref 1.0, floored 80 dB below the "
    "clip's maximum; mono mix, resampled to sample_rate, centred frames, periodic Hann window, "
    "Slaney mel filters; clips longer than `frames` cut, shorter ones padded with their floor; "
    "stored as float16"
)


@dataclass(frozen=True)
class FeatureSettings:
    """The input a model expects."""

    n_mels: int
    frames: int
    dtype: str  # of the training features: float16 (prepare-fma) or float32
    source: str  # "synthetic" or "feature_dir"
    audio: dict[str, Any] | None = None  # prepare-fma's MelSpec, when the features came from it

    def to_json(self) -> dict[str, Any]:
        return {
            "n_mels": self.n_mels,
            "frames": self.frames,
            "dtype": self.dtype,
            "source": self.source,
            "audio": self.audio,
            "audio_values": AUDIO_VALUES if self.audio is not None else None,
            "normalisation": NORMALISATION,
        }


def feature_settings(data_source: str, is_synthetic: bool, features) -> FeatureSettings:
    """The feature settings of a training dataset (its features array, its source)."""
    audio = None
    if not is_synthetic:
        prepared = Path(data_source) / PREPARE_FILE
        if prepared.is_file():
            try:
                audio = json.loads(prepared.read_text(encoding="utf-8"))["identity"]["mel"]
            except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError):
                audio = None  # a hand-edited prepare.json: the model takes features only
    return FeatureSettings(
        n_mels=int(features.shape[1]),
        frames=int(features.shape[2]),
        dtype=str(features.dtype),
        source="synthetic" if is_synthetic else "feature_dir",
        audio=audio,
    )


def model_card(
    *,
    config: dict[str, Any],
    experiment_name: str,
    genres: list[str],
    kept_genres: list[str],
    kept_idx: list[int],
    rule: dict[str, Any],
    configured_rule: dict[str, Any],
    features: FeatureSettings,
    device: str,
    versions: dict[str, str],
) -> dict[str, Any]:
    """The config.json payload of a model dir."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": config,
        "experiment_name": experiment_name,
        "genres": genres,
        "kept_genres": kept_genres,
        "kept_idx": kept_idx,
        "input_shape": [features.n_mels, features.frames],
        "decision_rule": rule,
        "configured_decision_rule": configured_rule,
        "features": features.to_json(),
        "device": device,
        "versions": versions,
    }


def card_of(
    cfg,
    prepared,
    *,
    rule: dict[str, Any],
    configured_rule: dict[str, Any],
    device: str,
    experiment_name: str,
    **more: Any,
) -> dict[str, Any]:
    """The model card of weights trained with `cfg` (a TrainConfig) on `prepared` (its
    PreparedData): what every model dir holds, whoever writes it; `more` adds keys (an
    export's provenance and runtime)."""
    from genretune.model.versions import package_versions

    dataset = prepared.dataset
    card = model_card(
        config=cfg.to_flat(),
        experiment_name=experiment_name,
        genres=list(dataset.genres),
        kept_genres=list(prepared.genre_filter.kept_genres),
        kept_idx=prepared.kept_idx.tolist(),
        rule=rule,
        configured_rule=configured_rule,
        features=feature_settings(cfg.data.source, cfg.data.is_synthetic, dataset.features),
        device=device,
        versions=package_versions(),
    )
    return {**card, **more}


def read_model_card(path: Path) -> dict[str, Any]:
    """A model dir's config.json, checked: one InputError naming the file and what is wrong."""
    from genretune.model.artifacts import CONFIG_FILE, WEIGHTS_FILE, read_json_object

    if not path.is_dir():
        raise BadValue("model_dir", f" {path}: directory not found")
    file = path / CONFIG_FILE
    if not file.is_file():
        raise BadValue("model_dir", f" {path}: not a model dir ({CONFIG_FILE} is missing)")
    card = read_json_object(file, "model config")
    if card.get("format") != FORMAT:
        if "provenance" in card:
            raise InputError(
                f"{file}: the weights an older `genretune export --with-checkpoint` wrote, not "
                "a model dir: export again, or retrain with `genretune train --config`"
            )
        if "config" in card and "kept_genres" in card:
            raise InputError(
                f"{file}: written by a genretune before model dirs were versioned "
                f"(format {FORMAT_VERSION} is needed): retrain it with this version"
            )
        raise InputError(f"{file}: not a genretune model config")
    version = card.get("format_version")
    if version != FORMAT_VERSION:
        newer = isinstance(version, int) and version > FORMAT_VERSION
        raise InputError(
            f"{file}: model dir format {version!r}; this genretune reads format "
            f"{FORMAT_VERSION}" + (" (upgrade genretune)" if newer else "")
        )
    _check_card(file, card)
    if not (path / WEIGHTS_FILE).is_file():
        raise BadValue("model_dir", f" {path}: incomplete ({WEIGHTS_FILE} is missing)")
    return card


def _check_card(file: Path, card: dict[str, Any]) -> None:
    def fail(what: str) -> InputError:
        return InputError(f"{file}: {what}")

    genres, kept, kept_idx = card.get("genres"), card.get("kept_genres"), card.get("kept_idx")
    if not isinstance(genres, list) or not genres or not all(isinstance(g, str) for g in genres):
        raise fail("'genres' must be a non-empty list of names")
    if not isinstance(kept, list) or not kept or not all(isinstance(g, str) for g in kept):
        raise fail("'kept_genres' must be a non-empty list of names")
    if (
        not isinstance(kept_idx, list)
        or len(kept_idx) != len(kept)
        or not all(isinstance(i, int) and 0 <= i < len(genres) for i in kept_idx)
        or [genres[i] for i in kept_idx] != kept
    ):
        raise fail("'kept_idx' does not match 'kept_genres' in 'genres'")
    if not isinstance(card.get("config"), dict):
        raise fail("has no 'config' object")
    rule = card.get("decision_rule")
    if not isinstance(rule, dict) or not {"threshold", "top_k"} <= set(rule):
        raise fail("'decision_rule' must hold 'threshold' and 'top_k'")
    features = card.get("features")
    if not isinstance(features, dict) or not all(
        isinstance(features.get(k), int) and features[k] >= 1 for k in ("n_mels", "frames")
    ):
        raise fail("'features' must give 'n_mels' and 'frames'")
