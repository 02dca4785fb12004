"""The model dir written by `genretune train`: weights, config, history, metrics, predictions.

Like a nanoGPT checkpoint, the dir carries everything needed to rebuild the model: the flat
config, the kept genres and the input shape. Weights are a plain state_dict, loaded with
`torch.load(weights_only=True)`.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genretune.data import InputError
from genretune.output_files import (
    fsync_path,
    fsync_tree,
    ignore_file_size_signal,
    is_write_error,
    make_parents,
    remove_created,
    temporary_name,
    write_error,
)

WEIGHTS_FILE = "model.pt"
CONFIG_FILE = "config.json"
HISTORY_FILE = "history.csv"
METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "predictions_{split}.npz"


def new_run_dir(output_dir: Path, experiment_name: str, stamp: str | None = None) -> Path:
    """`<output_dir>/<name>_<YYYYMMDD_HHMMSS>`, created now (empty), never reusing an existing
    dir."""
    stamp = stamp or datetime.now().strftime("%Y%m%d_%H%M%S")
    output_dir.mkdir(parents=True, exist_ok=True)
    n = 1
    while True:
        candidate = output_dir / (f"{experiment_name}_{stamp}" + (f"_{n}" if n > 1 else ""))
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            n += 1


def write_run_dir(
    output_dir: Path,
    experiment_name: str,
    write: Callable[[Path], None],
    flag: str = "--output-dir",
) -> Path:
    """A new model dir `<output_dir>/<name>_<stamp>`, complete or absent: `write` fills a
    hidden staging directory beside it, which is flushed to disk and renamed into place. A
    failure (a full disk, a file-size limit, Ctrl-C) leaves nothing: no staging directory, no
    empty model dir, no output dir created for it; a full disk or a size limit is one
    InputError naming the model dir."""
    ignore_file_size_signal()
    stamp = datetime.now().strftime("%Y%m%d_%H%M%S")
    name = f"{experiment_name}_{stamp}"
    staging = temporary_name(output_dir / name)
    created: list[Path] = []
    run_dir: Path | None = None
    try:
        created = make_parents(output_dir)
        staging.mkdir()
        write(staging)
        fsync_tree(staging)
        run_dir = new_run_dir(output_dir, experiment_name, stamp)  # claims a free name
        os.rename(staging, run_dir)  # over the empty dir just claimed: one atomic step
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if run_dir is not None:
            with contextlib.suppress(OSError):
                run_dir.rmdir()  # only while still empty: the rename did not happen
        remove_created(created)
        if is_write_error(exc):
            raise write_error(flag, output_dir / name, exc) from None
        raise
    with contextlib.suppress(OSError):
        fsync_path(output_dir)  # the rename is done; a directory that cannot sync loses nothing
    return run_dir


def write_json(path: Path, payload: Any) -> None:
    path.write_text(json.dumps(payload, indent=2, allow_nan=True) + "\n", encoding="utf-8")


def write_history(path: Path, history: list[dict[str, float]]) -> None:
    if not history:
        return
    keys = list(history[0])
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(history)


def write_model_files(directory: Path, card: dict[str, Any], weights: dict[str, Any]) -> None:
    """The two files of every model dir, whoever writes it (`genretune train`, `export
    --with-checkpoint`): config.json, the model card (model_card.card_of), and model.pt, the
    weights (a state dict, saved from the CPU)."""
    write_json(directory / CONFIG_FILE, card)
    buffer = io.BytesIO()  # serialised first: a failed write is then an OSError, not torch's
    torch.save({k: v.detach().cpu() for k, v in weights.items()}, buffer)
    (directory / WEIGHTS_FILE).write_bytes(buffer.getvalue())


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise InputError(f"{path}: weights file not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or unsafe files
        raise InputError(f"{path}: cannot load weights ({type(exc).__name__})") from None


def save_predictions(directory: Path, split: str, y_true: np.ndarray, y_score: np.ndarray) -> Path:
    path = directory / PREDICTIONS_FILE.format(split=split)
    np.savez_compressed(path, y_true=y_true.astype(np.uint8), y_score=y_score.astype(np.float32))
    return path


def read_json_object(path: Path, what: str) -> dict[str, Any]:
    if path.is_dir():
        raise InputError(f"{path}: a directory, not a {what}")
    if not path.is_file():
        raise InputError(f"{path}: {what} not found")
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(payload, dict):
        raise InputError(f"{path}: {what} must be a JSON object")
    return payload


def load_predictions(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(y_true, y_score) of a predictions .npz, validated."""
    if not path.is_file():
        raise InputError(f"{path}: predictions file not found")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = {"y_true", "y_score"} - set(npz.files)
            if missing:
                raise InputError(f"{path}: missing array(s) {', '.join(sorted(missing))}")
            y_true, y_score = npz["y_true"], npz["y_score"]
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"{path}: not a readable .npz file ({type(exc).__name__})") from None
    if y_true.ndim != 2 or y_true.shape != y_score.shape:
        raise InputError(
            f"{path}: y_true and y_score must both be (N, G), "
            f"got {y_true.shape} and {y_score.shape}"
        )
    if y_true.shape[0] == 0 or y_true.shape[1] == 0:
        raise InputError(f"{path}: predictions are empty")
    if y_true.dtype.kind not in "biuf" or not np.isin(y_true, (0, 1)).all():
        raise InputError(f"{path}: y_true must contain only 0 and 1")
    if y_score.dtype.kind not in "biuf":
        raise InputError(f"{path}: y_score must be numeric")
    y_score = y_score.astype(np.float32)
    if not np.isfinite(y_score).all() or y_score.min() < 0 or y_score.max() > 1:
        raise InputError(f"{path}: y_score must be probabilities in [0, 1]")
    return y_true.astype(np.uint8), y_score
