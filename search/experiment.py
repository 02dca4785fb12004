"""Experiment identity on disk: names, storage paths, and the settings file that `--resume`,
`results` and `export` read back."""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

from genretune.data import InputError

SETTINGS_FILE = "genretune_search.json"
OPTUNA_DB = "optuna.db"
# What a resume needs of the settings file (the rest has defaults).
SETTINGS_KEYS = ("name", "storage_path", "profile", "base_config", "space", "metric", "mode")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def check_name(name: str, flag: str = "--name") -> str:
    """Experiment names are one path component of at most 100 characters: no separators, no
    '..', nothing hidden."""
    if not _NAME.match(name) or ".." in name:
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


def is_experiment_dir(path: Path) -> bool:
    return (path / SETTINGS_FILE).is_file() or (path / "tuner.pkl").is_file()


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
    tmp = path / f".{SETTINGS_FILE}.tmp"
    tmp.write_text(json.dumps(settings, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path / SETTINGS_FILE)


def read_settings(path: Path, flag: str = "") -> dict[str, Any]:
    """The settings a search was started with; `flag` names the option that pointed here."""
    file = path / SETTINGS_FILE
    where = f"{flag} {path.name}: " if flag else ""
    if not path.is_dir():
        raise InputError(f"{where}no experiment at {path}")
    if not file.is_file():
        raise InputError(f"{where}{path} is not a genretune experiment (no {SETTINGS_FILE})")
    try:
        payload = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{file}: not valid JSON, cut or damaged ({exc})") from None
    if not isinstance(payload, dict) or not all(k in payload for k in SETTINGS_KEYS):
        raise InputError(f"{file}: not a complete genretune search settings file")
    return payload
