"""Weights of a trial: the best-epoch model kept in its latest readable checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from genretune.data import InputError

STATE_FILE = "state.pt"


def trial_checkpoints(trial_dir: Path) -> list[Path]:
    """Checkpoint dirs of a trial, newest first."""
    return sorted(trial_dir.glob("checkpoint_*"), key=lambda p: p.name, reverse=True)


def latest_state(trial_dir: Path) -> dict[str, Any]:
    """The newest checkpoint's training state that loads (weights only, never pickle).

    Each checkpoint carries the best-so-far weights (`best_model`), so the newest one holds the
    trial's best epoch; a truncated newest checkpoint falls back to the one before.
    """
    for checkpoint in trial_checkpoints(trial_dir):
        try:
            return torch.load(checkpoint / STATE_FILE, map_location="cpu", weights_only=True)
        except Exception:  # unreadable: try the previous checkpoint
            continue
    raise InputError(f"{trial_dir}: the trial has no readable checkpoint")
