"""The search's side of the experiment directory: names, storage paths, creating, replacing
and finishing an experiment, and the repair of rerun rows. The directory's files, their names,
the settings file and the writer lock are `genretune.results.experiment_dir`'s."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

from genretune.data import InputError
from genretune.output_files import write_text_atomically
from genretune.results.experiment_dir import (
    FINISHED_FILE,
    SETTINGS_FILE,
    is_experiment_dir,
    read_settings,
    trial_dirs,
)

__all__ = ["is_experiment_dir", "read_settings"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


# The experiment this driver runs, where it is now, and its study's URL: set by the search
# before Ray's fit, read by what Ray restores from the saved state on --resume (stoppers, the
# searcher), which must not act on the location it was saved in (it may have been moved).
_BEING_RUN: dict[str, Any] = {}


def set_experiment_being_run(
    path: Path | None, study_url: str | None = None, progress_interval: float | None = None
) -> None:
    """`path` None: none, or one on cloud storage (a study URL is still given)."""
    _BEING_RUN.clear()
    _BEING_RUN.update(
        path=None if path is None else Path(path),
        study_url=study_url,
        progress_interval=progress_interval,
    )


def experiment_being_run() -> Path | None:
    """The local experiment directory this driver runs (None: none, or on cloud storage)."""
    return _BEING_RUN.get("path")


def study_url_being_run() -> str | None:
    return _BEING_RUN.get("study_url")


def progress_interval_being_run() -> float | None:
    """--progress-interval of this run (a resumed search's monitor was saved with the first)."""
    return _BEING_RUN.get("progress_interval")


def check_name(name: str, flag: str = "--name") -> str:
    """Experiment names are one path component of at most 100 characters: no separators, no
    '..', nothing hidden."""
    if not _NAME.fullmatch(name) or ".." in name:  # whole: '$' would pass a final newline
        shown = name if len(name) <= 60 else name[:57] + "..."
        raise InputError(
            f"{flag} {shown!r}: use 1-100 letters, digits, '.', '_' or '-' starting with a "
            "letter or digit (no path separators or '..')"
        )
    return name


def is_uri(storage_path: str) -> bool:
    return "://" in storage_path


def resolve_storage_path(storage_path: str) -> str:
    """Absolute local path (Ray needs one) or the URI unchanged."""
    return storage_path if is_uri(storage_path) else str(Path(storage_path).expanduser().resolve())


def check_writable(directory: Path) -> None:
    """Fail before any trial starts when the storage path cannot take files.

    The probe goes to the nearest directory that already exists, so a failed check (or any later
    input error) leaves no experiment directory behind.
    """
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        if not existing.is_dir():
            raise NotADirectoryError(f"{existing} is not a directory")
        probe = existing / f".genretune-write-test-{uuid.uuid4().hex}"
        try:
            with probe.open("wb") as fh:
                fh.write(b"\0" * 65536)
                fh.flush()
                os.fsync(fh.fileno())
        finally:
            probe.unlink(missing_ok=True)
    except OSError as exc:
        raise InputError(
            f"--storage-path {directory}: not writable ({exc.strerror or exc})"
        ) from None


def check_experiment_dir(path: Path, resume: bool, overwrite: bool) -> bool:
    """Refuse to mix two experiments: an existing name needs --resume or --overwrite.

    True when an existing experiment is to be replaced; the caller deletes it (with
    `remove_experiment`) only after every other check has passed.
    """
    exists = path.exists() and any(path.iterdir()) if path.is_dir() else path.exists()
    if resume:
        if not is_experiment_dir(path):
            raise InputError(f"--resume {path.name}: no experiment at {path}")
        return False
    if not exists:
        return False
    if not overwrite:
        raise InputError(
            f"--name {path.name}: experiment {path} already exists; "
            "use --resume to continue it or --overwrite to replace it"
        )
    if not is_experiment_dir(path):
        raise InputError(f"--overwrite: {path} is not a genretune experiment; not deleting it")
    return True


def remove_experiment(path: Path) -> None:
    shutil.rmtree(path)


def write_settings(path: Path, settings: dict[str, Any]) -> None:
    path.mkdir(parents=True, exist_ok=True)
    write_text_atomically(path / SETTINGS_FILE, json.dumps(settings, indent=2, default=str) + "\n")


def mark_finished(path: Path, trials: int, seconds: float) -> None:
    payload = {"trials": trials, "seconds": round(seconds, 1)}
    write_text_atomically(path / FINISHED_FILE, json.dumps(payload) + "\n")


def is_finished(path: Path) -> bool:
    return (path / FINISHED_FILE).is_file()


def _rows_to_keep(iterations: list[str | None]) -> list[int]:
    """Indices of the rows to keep, in file order: the last row of each training iteration
    (a rerun appends its rows after the ones it replaces) and every row without one."""
    last = {it: i for i, it in enumerate(iterations) if it is not None}
    return [i for i, it in enumerate(iterations) if it is None or last[it] == i]


def _dedupe_progress_csv(path: Path) -> int:
    """Rows dropped from a trial's progress.csv (0 when nothing was rerun)."""
    text = path.read_text(encoding="utf-8", errors="replace")
    records = list(csv.reader(io.StringIO(text, newline="")))
    if len(records) < 3 or "training_iteration" not in records[0]:
        return 0
    column = records[0].index("training_iteration")
    body = [r for r in records[1:] if r]
    keep = _rows_to_keep([r[column] if len(r) > column else None for r in body])
    if len(keep) == len(body):
        return 0
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(records[0])
    writer.writerows(body[i] for i in keep)
    write_text_atomically(path, out.getvalue())
    return len(body) - len(keep)


def _dedupe_result_json(path: Path) -> int:
    """Lines dropped from a trial's result.json (one JSON object per line)."""
    text = path.read_text(encoding="utf-8", errors="replace")
    lines = [line for line in text.splitlines() if line.strip()]
    iterations: list[str | None] = []
    for line in lines:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None  # a cut last line stays as it is
        value = row.get("training_iteration") if isinstance(row, dict) else None
        iterations.append(None if value is None else str(value))
    keep = _rows_to_keep(iterations)
    if len(keep) == len(lines):
        return 0
    write_text_atomically(path, "".join(lines[i] + "\n" for i in keep))
    return len(lines) - len(keep)


def drop_rerun_rows(experiment_path: Path) -> dict[str, int]:
    """Make each trial's history hold every epoch once, for Ray's readers as for genretune's.

    A trial restarted from a checkpoint older than its last logged epoch (the driver stopped
    between logging an epoch and recording its checkpoint, or a worker died) runs those epochs
    again and Ray appends their rows a second time. The later row belongs to the run that
    continued; the earlier one, whose weights were never kept, is dropped. Returns the rows
    dropped from progress.csv per trial directory that had any.
    """
    dropped: dict[str, int] = {}
    for trial_dir in trial_dirs(experiment_path):
        progress, result = trial_dir / "progress.csv", trial_dir / "result.json"
        n = _dedupe_progress_csv(progress) if progress.is_file() else 0
        if result.is_file():
            n = max(n, _dedupe_result_json(result))
        if n:
            dropped[trial_dir.name] = n
    return dropped
