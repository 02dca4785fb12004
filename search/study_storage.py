"""Opening the search's Optuna study database.

Opening an RDB storage creates its tables when they are missing. A reader opening the same new
database at that moment (`optuna.load_study` in a notebook, a script polling the study) races
to create them: SQLite then says "table ... already exists" or a unique constraint failed, and
the search would end before its first trial. The tables are there by then, so opening again
succeeds."""

from __future__ import annotations

import time

import optuna

_ATTEMPTS = 5


def _created_by_another(exc: Exception) -> bool:
    text = str(exc).lower()
    return "already exists" in text or "unique constraint" in text or "is locked" in text


def open_rdb_storage(url: str) -> optuna.storages.RDBStorage:
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            return optuna.storages.RDBStorage(url)
        except Exception as exc:  # SQLAlchemy's OperationalError, IntegrityError, ...
            if attempt == _ATTEMPTS or not _created_by_another(exc):
                raise
            time.sleep(0.2 * attempt)
    raise AssertionError("unreachable")
