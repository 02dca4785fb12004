"""The search opens its study database while readers (a notebook's `optuna.load_study`, a
script polling the study) may be opening the same new file: whoever creates the tables first,
every opener gets the storage."""

from __future__ import annotations

import multiprocessing

import pytest

from genretune.search.study_storage import open_rdb_storage

pytestmark = pytest.mark.slow  # forks 30 processes that import optuna


def _open(url: str, errors) -> None:
    try:
        open_rdb_storage(url)
    except Exception as exc:  # reported to the test, whatever it is
        errors.put(f"{type(exc).__name__}: {str(exc)[:200]}")


def test_three_processes_opening_a_new_study_database_at_once(tmp_path):
    context = multiprocessing.get_context("fork")
    errors = context.Queue()
    for round_ in range(10):
        url = f"sqlite:///{tmp_path / f'study{round_}.db'}"
        openers = [context.Process(target=_open, args=(url, errors)) for _ in range(3)]
        for proc in openers:
            proc.start()
        for proc in openers:
            proc.join(timeout=60)
            assert proc.exitcode == 0
    failures = []
    while not errors.empty():
        failures.append(errors.get())
    assert failures == []
