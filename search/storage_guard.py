"""A search that runs out of storage stops itself while it can still save.

Every epoch of every trial writes a checkpoint, logs and Ray's experiment state into the
experiment directory. On a full disk those writes fail in the trials (each retried up to
--max-failures times), in Ray's saving of the experiment and in the Optuna study, and the run
ends in pages of tracebacks with its last state unsaved. The guard watches the free space of
the experiment's filesystem and, once it falls under what the running trials are about to
write, stops the search the way Ctrl-C does: Ray saves it, the trials that were running stay
resumable, and the user frees space and runs `genretune search --resume`.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any

from ray import tune

from genretune.results.experiment_dir import EXPERIMENT_STATE_GLOB, trial_dir_name, trial_dirs
from genretune.search.experiment_writer import experiment_being_run

# Kept free besides the checkpoints about to be written (logs, state files, the study).
FLOOR_BYTES = 1 << 20
CHECK_EVERY_S = 1.0
RECENT_TRIALS = 8  # trials whose checkpoints size the next round of writes
STORAGE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
STORAGE_MESSAGES = ("No space left on device", "Disk quota exceeded", "File too large")

_TRIPPED: list[str] = []  # why the guard stopped this driver's search (at most one reason)


def storage_full_reason() -> str | None:
    return _TRIPPED[0] if _TRIPPED else None


def reset() -> None:
    _TRIPPED.clear()


def is_storage_error(exc: BaseException | None) -> bool:
    """Whether an exception (or one it was raised from, or its message: Ray wraps a trial's
    error in its own types) says the storage is full or a size limit was reached."""
    seen = 0
    while exc is not None and seen < 20:
        if isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS:
            return True
        if any(m in str(exc) for m in STORAGE_MESSAGES):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def note_storage_full(reason: str) -> None:
    if not _TRIPPED:
        _TRIPPED.append(reason)


def _largest_checkpoint(dirs: list[Path]) -> int:
    """Bytes of the largest checkpoint in the trial directories `dirs`."""
    largest = 0
    for d in dirs:
        for ckpt in d.glob("checkpoint_*"):
            try:
                size = sum(f.stat().st_size for f in ckpt.iterdir() if f.is_file())
            except OSError:  # trimmed or replaced while it was read
                continue
            largest = max(largest, size)
    return largest


def _largest_state(path: Path) -> int:
    return max((p.stat().st_size for p in path.glob(EXPERIMENT_STATE_GLOB)), default=0)


def bytes_needed(path: Path, slots: int, recent: list[str] | None = None) -> int:
    """What the next round of writes needs: a checkpoint per running trial and two more, Ray's
    experiment state twice (written beside the old one, then renamed), and the floor. The
    checkpoint's size is the largest of the trials that reported last (`recent` trial ids; all
    trials when not given)."""
    dirs = trial_dirs(path) if recent is None else [path / trial_dir_name(t) for t in recent]
    return (slots + 2) * _largest_checkpoint(dirs) + 2 * _largest_state(path) + FLOOR_BYTES


class StorageGuard(tune.Stopper):
    """Never stops a trial; stops the whole search, as Ctrl-C would, when storage runs low."""

    def __init__(self, slots: int) -> None:
        self.slots = max(1, slots)
        self._last = 0.0
        self._recent: dict[str, None] = {}  # the trials that reported last, oldest first

    def __getstate__(self) -> dict[str, Any]:
        return {"slots": self.slots}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.slots = state["slots"]
        self._last = 0.0
        self._recent = {}

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        # The trials that reported last hold the newest checkpoints: looking at them only
        # keeps each check's cost the same at the thousandth trial as at the first.
        self._recent.pop(trial_id, None)
        self._recent[trial_id] = None
        if len(self._recent) > RECENT_TRIALS:
            del self._recent[next(iter(self._recent))]
        self._check()
        return False

    def stop_all(self) -> bool:
        self._check()
        # Where no interrupt can be raised (off the main thread), Ray's own stop is the way.
        return bool(_TRIPPED) and threading.current_thread() is not threading.main_thread()

    def _check(self) -> None:
        now = time.monotonic()
        path = experiment_being_run()
        if _TRIPPED or path is None or now - self._last < CHECK_EVERY_S:
            return
        self._last = now
        try:
            free = shutil.disk_usage(path).free
            needed = bytes_needed(path, self.slots, list(self._recent) or None)
        except OSError:
            return
        if free < needed:
            note_storage_full(
                f"{free / 1e6:.1f} MB free, the running trials need about {needed / 1e6:.1f} MB"
            )
            stop_like_ctrl_c()


def stop_like_ctrl_c() -> None:
    """Ray's SIGINT handler saves the experiment and ends the run with its trials resumable."""
    if threading.current_thread() is threading.main_thread():
        os.kill(os.getpid(), signal.SIGINT)


class StorageErrorFilter(logging.Filter):
    """Drops Ray's and Optuna's tracebacks about a full disk once genretune has noted it (it
    says so in one line); the first one notes it."""

    def filter(self, record: logging.LogRecord) -> bool:
        texts = [record.getMessage()]
        exc = record.exc_info[1] if record.exc_info else None
        while exc is not None and len(texts) < 20:
            texts.append(str(exc))
            exc = exc.__cause__ or exc.__context__
        said = next((m for m in STORAGE_MESSAGES if any(m in t for t in texts)), None)
        if said is None:
            return True
        note_storage_full(f"a write failed: {said}")
        stop_like_ctrl_c()
        return False


def quiet_storage_errors() -> None:
    from genretune.results.internals import STORAGE_ERROR_LOGGERS

    for name in STORAGE_ERROR_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, StorageErrorFilter) for f in logger.filters):
            logger.addFilter(StorageErrorFilter())
