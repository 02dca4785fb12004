"""Where and how a command writes its outputs.

Checks made before anything is written: a file target must not be a directory or anything but
a regular file (a device such as /dev/full, a FIFO: a file renamed over it would replace the
device), must have an existing, writable parent, and is not replaced without --force; a
directory target must not be a file and must be creatable; and no output lies inside an
experiment directory or at its writer lock (only `genretune search` writes there; the
experiment a path lies in is found by `genretune.results.experiment_dir.enclosing_experiment`,
which this package does not import).

And the one way outputs are written: atomically and all or nothing. Each output is written to a
temporary file (or directory) beside its target, flushed to disk, and renamed into place only
once every output of the command is written; a full disk, a quota or a file-size limit is then
one `InputError` naming the output, with no partial or temporary file left and an earlier file
untouched.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from genretune.errors import InputError

# Errors of the storage rather than of the program: reported in one line naming the output.
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS})


def write_text_atomically(path: Path, text: str) -> None:
    """Replace `path` with `text`: a kill mid-write leaves the old file or the new one, never a
    cut one (the temporary file sits beside it, so the rename stays on one filesystem)."""
    tmp = temporary_name(path)
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def temporary_name(path: Path, tag: str = "tmp") -> Path:
    """`.<name>.<pid>.<tag>` beside `path`: hidden, on the same filesystem, one per process."""
    return path.with_name(f".{path.name}.{os.getpid()}.{tag}")


def ignore_file_size_signal() -> None:
    """A file-size limit (ulimit -f) kills a process with SIGXFSZ unless the signal is ignored;
    ignored, the write fails with EFBIG and is reported like a full disk. Only the main thread
    can set it; elsewhere this does nothing."""
    try:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    except (ValueError, AttributeError, OSError):
        pass


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


def check_regular_file(path: Path, flag: str) -> None:
    """Refuse an existing `path` that is not a regular file (a device, FIFO or socket, also
    through a symbolic link): an output renamed over it would replace it, and writing into it
    would not be a file at all."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return  # missing (or a dangling link): a new file replaces it
    if stat.S_ISDIR(mode):
        raise InputError(f"{flag} {path}: is a directory (give a file name)")
    if not stat.S_ISREG(mode):
        raise InputError(
            f"{flag} {path}: exists and is not a regular file (a device, FIFO or socket): "
            "give a file name"
        )


def check_output_file(path: Path, flag: str, force: bool = False) -> None:
    ignore_file_size_signal()
    check_regular_file(path, flag)
    if path.exists() and not force:
        raise InputError(f"{flag} {path}: already exists (use --force to replace it)")
    if path.exists() and not os.access(path, os.W_OK):
        raise InputError(f"{flag} {path}: cannot replace it (permission denied)")
    _writable_parent(path, flag)


def check_output_dir(path: Path, flag: str) -> None:
    """A directory that exists and is writable, or can be created (with its parents)."""
    ignore_file_size_signal()
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


def check_outside_experiment(target: Path, flag: str, experiment: Path | None) -> None:
    """Refuse an output `target` that lies in `experiment` (the experiment directory it is in,
    or whose writer lock it is; None when it is outside every experiment)."""
    if experiment is None:
        return
    lock = Path(target).name == f"{Path(experiment).name}.lock"
    where = "the writer lock of" if lock else "inside"
    raise InputError(
        f"{flag} {target}: {where} the experiment {experiment}; write outputs outside it"
    )


# -- writing ---------------------------------------------------------------------------------


def write_error(flag: str, target: Path, exc: OSError, kept: str = "") -> InputError:
    """The one line for an output that could not be written."""
    reason = exc.strerror or (os.strerror(exc.errno) if exc.errno else type(exc).__name__)
    kept = f"; {kept}" if kept else ""
    return InputError(f"{flag} {target}: cannot write it: {reason} (nothing written{kept})")


def is_write_error(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in WRITE_ERRNOS


def make_parents(directory: Path) -> list[Path]:
    """Create `directory` and its missing parents; the ones created, outermost first."""
    missing = []
    for d in (directory, *directory.parents):
        if d.exists():
            break
        missing.append(d)
    created: list[Path] = []
    try:
        for d in reversed(missing):
            try:
                d.mkdir()
            except FileExistsError:
                continue
            created.append(d)
    except BaseException:
        remove_created(created)
        raise
    return created


def remove_created(created: list[Path]) -> None:
    """Remove the directories make_parents created, innermost first, if still empty."""
    for d in reversed(created):
        try:
            d.rmdir()
        except OSError:
            break


def fsync_path(path: Path) -> None:
    """Flush a file (or a directory's entries) to disk: a full disk that the page cache hid
    surfaces here, before the rename, not after."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EBADF, errno.ENOTSUP):
            raise  # some filesystems cannot sync a directory: nothing lost there
    finally:
        os.close(fd)


def fsync_tree(directory: Path) -> None:
    for root, _, files in os.walk(directory):
        for name in files:
            fsync_path(Path(root) / name)
        fsync_path(Path(root))


@dataclass
class _Staged:
    target: Path
    flag: str
    tmp: Path
    kind: str  # "file", "new dir" (renamed into place), "into dir" (its files moved into target)
    kept: str = ""


@dataclass
class Outputs:
    """A command's outputs, written all or nothing: each is staged beside its target and
    renamed into place by `commit` once all are written; `discard` removes every trace."""

    staged: list[_Staged] = field(default_factory=list)
    created: list[Path] = field(default_factory=list)

    @contextmanager
    def file(self, target: Path, flag: str) -> Iterator[Path]:
        """A temporary path to write `target`'s content to (it may not exist yet)."""
        target = Path(target)
        check_regular_file(target, flag)
        kept = "the existing file is kept" if target.exists() else ""
        item = _Staged(target, flag, temporary_name(target), "file", kept)
        self.staged.append(item)
        with self._reporting(item):
            yield item.tmp

    @contextmanager
    def directory(self, target: Path, flag: str) -> Iterator[Path]:
        """A temporary directory to write `target`'s files into, under their own names: a new
        target is the temporary directory renamed; into an existing one, the files are moved
        one by one (replacing files of the same names, leaving others)."""
        target = Path(target)
        if target.exists():
            if not target.is_dir():
                raise InputError(f"{flag} {target}: exists and is not a directory")
            tmp = target / f".genretune.{os.getpid()}.tmp"
            kind = "into dir"
            kept = "the files already in it are kept" if any(target.iterdir()) else ""
        else:
            tmp, kind, kept = temporary_name(target), "new dir", ""
        item = _Staged(target, flag, tmp, kind, kept)
        self.staged.append(item)
        with self._reporting(item):
            if kind == "new dir":
                self.created += make_parents(target.parent)
            tmp.mkdir()
            yield tmp
        if kind == "into dir":
            for entry in tmp.iterdir():
                check_regular_file(target / entry.name, flag)

    @contextmanager
    def _reporting(self, item: _Staged) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            if is_write_error(exc):
                raise write_error(item.flag, item.target, exc, item.kept) from None
            raise

    def commit(self) -> None:
        for item in self.staged:
            with self._reporting(item):
                if item.kind == "file":
                    fsync_path(item.tmp)
                else:
                    fsync_tree(item.tmp)
        for item in self.staged:
            with self._reporting(item):
                if item.kind == "file":
                    os.replace(item.tmp, item.target)
                elif item.kind == "new dir":
                    os.rename(item.tmp, item.target)
                else:
                    for entry in sorted(item.tmp.iterdir()):
                        os.replace(entry, item.target / entry.name)
                    item.tmp.rmdir()
        for directory in dict.fromkeys(item.target.parent for item in self.staged):
            try:
                fsync_path(directory)
            except OSError:
                pass  # the renames are done; a directory that cannot be synced loses nothing
        self.staged.clear()
        self.created.clear()

    def discard(self) -> None:
        for item in self.staged:
            if item.tmp.is_dir() and not item.tmp.is_symlink():
                shutil.rmtree(item.tmp, ignore_errors=True)
            else:
                item.tmp.unlink(missing_ok=True)
        self.staged.clear()
        remove_created(self.created)
        self.created.clear()


@contextmanager
def atomic_outputs() -> Iterator[Outputs]:
    """Stage outputs with `outputs.file(...)` / `outputs.directory(...)` inside the block; they
    are renamed into place together when it ends, and removed if anything raises (also
    Ctrl-C)."""
    ignore_file_size_signal()
    outputs = Outputs()
    try:
        yield outputs
        outputs.commit()
    except BaseException:
        outputs.discard()
        raise


@contextmanager
def atomic_output(path: Path, flag: str) -> Iterator[Path]:
    """One output file: write to the temporary path yielded; renamed over `path` at the end."""
    with atomic_outputs() as outputs, outputs.file(path, flag) as tmp:
        yield tmp


def write_bytes_atomically(path: Path, data: bytes, flag: str) -> None:
    with atomic_output(path, flag) as tmp:
        tmp.write_bytes(data)
