"""Checks on where a command will write, made before anything is written: a file target must
not be a directory, must have an existing, writable parent, and is not replaced without
--force; a directory target must not be a file and must be creatable. And the one way small
state files are written: atomically."""

from __future__ import annotations

import os
from pathlib import Path

from genretune.data.errors import InputError


def write_text_atomically(path: Path, text: str) -> None:
    """Replace `path` with `text`: a kill mid-write leaves the old file or the new one, never a
    cut one (the temporary file sits beside it, so the rename stays on one filesystem)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def writable(directory: Path) -> bool:
    """Whether files can be created in an existing directory: its permissions, and (they do
    not stop root) whether its filesystem is mounted read-only."""
    if not os.access(directory, os.W_OK | os.X_OK):
        return False
    try:
        return not os.statvfs(directory).f_flag & os.ST_RDONLY
    except OSError:
        return True


def _writable_parent(path: Path, flag: str) -> None:
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"{flag} {path}: the directory {parent} does not exist")
    if not writable(parent):
        raise InputError(f"{flag} {path}: cannot write in {parent} (permission denied)")


def check_output_file(path: Path, flag: str, force: bool = False) -> None:
    if path.is_dir():
        raise InputError(f"{flag} {path}: is a directory (give a file name)")
    if path.exists() and not force:
        raise InputError(f"{flag} {path}: already exists (use --force to replace it)")
    if path.exists() and not os.access(path, os.W_OK):
        raise InputError(f"{flag} {path}: cannot replace it (permission denied)")
    _writable_parent(path, flag)


def check_output_dir(path: Path, flag: str) -> None:
    """A directory that exists and is writable, or can be created (with its parents)."""
    if path.exists():
        if not path.is_dir():
            raise InputError(f"{flag} {path}: exists and is not a directory")
        if not writable(path):
            raise InputError(f"{flag} {path}: cannot write in it (permission denied)")
        return
    existing = path
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"{flag} {path}: {existing} is not a directory")
    if not writable(existing):
        raise InputError(f"{flag} {path}: cannot create it in {existing} (permission denied)")
