"""The environment a command runs in, checked before the command writes anything: the
variables naming directories it needs (HOME, TMPDIR, GENRETUNE_CACHE_DIR), a working directory
that no longer exists, a locale whose encoding Ray cannot take, and standard streams that
cannot take every character or cannot be written at all. A fault is one line naming the
variable or stream, exit code 2 (main() prints it). Each command is checked only for what it
uses: `--help` and `results` need none of the variables, a search starting a local Ray needs
TMPDIR and HOME, and the dataset cache is checked where a dataset is about to be cached
(data.sources)."""

from __future__ import annotations

import argparse
import codecs
import io
import os
import sys
from pathlib import Path

from genretune.data import InputError

# Arguments whose values are paths given as text (pathlib.Path values are paths anyway).
TEXT_PATHS = ("storage_path", "data", "experiment", "optuna_storage", "mlflow_uri")
DATA_COMMANDS = ("train", "search", "data")  # commands that may load or generate a dataset
ESCAPE = "genretune.escape"


def check_environment(args: argparse.Namespace) -> None:
    """What `args`' command needs of its environment, before its handler runs."""
    check_working_directory(args)
    if uses_ray(args):
        check_encoding_for_ray(args)
    if starts_local_ray(args):
        from genretune.search.ray_cluster import check_local_environment

        check_local_environment()


def starts_local_ray(args: argparse.Namespace) -> bool:
    """A search without --address (nor RAY_ADDRESS) starts a Ray of its own, unless this process
    already runs one."""
    if args.command != "search" or getattr(args, "address", None):
        return False
    ray = sys.modules.get("ray")
    return not (ray is not None and ray.is_initialized())


def uses_ray(args: argparse.Namespace) -> bool:
    """The command starts or joins Ray, or reads an experiment with Ray's reader."""
    if args.command in ("search", "results", "export"):
        return True
    return args.command == "data" and bool(getattr(args, "address", None))


# The working directory ------------------------------------------------------------------------


def _relative(dest: str, value: object) -> bool:
    """Whether the argument `dest` holding `value` names a path relative to the working dir."""
    if isinstance(value, Path):
        return not value.expanduser().is_absolute()
    if dest not in TEXT_PATHS or not isinstance(value, str) or not value:
        return False
    if dest == "data" and value == "synthetic":
        return False
    if dest == "experiment" and "/" not in value:
        return False  # a name, looked up under --storage-path
    if dest == "optuna_storage":
        return value.startswith("sqlite:///") and not value.startswith("sqlite:////")
    if "://" in value or value.startswith("file:"):
        return False  # a URI (cloud storage, a database, a tracking server)
    return not Path(value).expanduser().is_absolute()


def relative_paths(args: argparse.Namespace) -> list[str]:
    """The path arguments (and directory variables) of `args` that are relative, as given."""
    found = []
    for dest, value in vars(args).items():
        if dest == "command_line" or not _relative(dest, value):
            continue
        flag = dest if dest == "experiment" else "--" + dest.replace("_", "-")
        found.append(f"{flag} {value}")
    variables = []
    if args.command in DATA_COMMANDS:
        variables.append("GENRETUNE_CACHE_DIR")
    if starts_local_ray(args):
        variables += ["RAY_TMPDIR", "TMPDIR"]
    for variable in variables:
        value = os.environ.get(variable)
        if value and not Path(value).expanduser().is_absolute():
            found.append(f"{variable} {value}")
    return found


def check_working_directory(args: argparse.Namespace) -> None:
    """A command run from a directory that was deleted works with absolute paths; a relative
    one cannot be found, and is refused. Ray and pyarrow resolve even absolute paths against
    the working directory (os.getcwd), so the process moves to the root directory first."""
    try:
        os.getcwd()
        return
    except FileNotFoundError:
        pass
    relative = relative_paths(args)
    if relative:
        verb = "is" if len(relative) == 1 else "are"
        raise InputError(
            "the working directory no longer exists: give absolute paths "
            f"({', '.join(relative)} {verb} relative to it)"
        )
    os.chdir("/")


# The locale ------------------------------------------------------------------------------------


def check_encoding_for_ray(args: argparse.Namespace) -> None:
    """Ray passes the command line and paths to its C++ core as UTF-8. Under a locale whose
    encoding is not UTF-8 (PYTHONUTF8=0 in the C locale, or a Latin-1 locale) Python holds
    non-ASCII arguments in a form that cannot become UTF-8 (ray.init would fail with a
    traceback), or that is a different name once it has."""
    if codecs.lookup(sys.getfilesystemencoding()).name == "utf-8":
        return
    if args.command == "search":
        texts = list(sys.argv)  # Ray records the driver's command line
    else:
        texts = [str(v) for k, v in vars(args).items() if isinstance(v, Path) or k in TEXT_PATHS]
    try:
        texts.append(os.getcwd())
    except FileNotFoundError:
        pass
    found = next((t for t in texts if not t.isascii()), None)
    if found is None:
        return
    names = ("LC_ALL", "LC_CTYPE", "LANG")
    where = next((f"{v}={os.environ[v]}" for v in names if os.environ.get(v)), "the locale")
    if os.environ.get("PYTHONUTF8") == "0":
        where += " with PYTHONUTF8=0"
    shown = found.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    raise InputError(
        f"{where}: Python reads arguments and paths as "
        f"{sys.getfilesystemencoding()} here, and Ray cannot take the non-ASCII {shown!r}: use "
        "a UTF-8 locale (e.g. LC_ALL=C.UTF-8) or unset PYTHONUTF8"
    )


# Standard streams -------------------------------------------------------------------------------


def _escape(exc: UnicodeError) -> tuple[str | bytes, int]:
    """Characters the stream's encoding cannot take: bytes a file name held as they were
    (surrogateescape), anything else as a backslash escape."""
    try:
        return codecs.lookup_error("surrogateescape")(exc)
    except UnicodeError:
        return codecs.lookup_error("backslashreplace")(exc)


class _Output(io.TextIOWrapper):
    """Standard output that remembers why a write failed: main() tells a full disk under
    standard output (one line) from any other OSError (a traceback)."""

    failure: OSError | None = None

    def write(self, text: str) -> int:
        try:
            return super().write(text)
        except OSError as exc:
            self.failure = exc
            raise

    def flush(self) -> None:
        try:
            super().flush()
        except OSError as exc:
            self.failure = exc
            raise


def configure_streams() -> None:
    """Standard output and error take every character: genre names and paths need not be
    ASCII. Under an ASCII locale (C or POSIX with PYTHONUTF8=0) they write UTF-8, as Python
    does in the C locale by default; under another encoding what it cannot take is escaped.
    Standard output is replaced by an _Output on the same file descriptor."""
    try:
        codecs.lookup_error(ESCAPE)
    except LookupError:
        codecs.register_error(ESCAPE, _escape)
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is None or stream is not getattr(sys, f"__{name}__"):
            continue  # closed, or replaced by the caller (a test's capture, an earlier call)
        if not isinstance(stream, io.TextIOWrapper):
            continue
        encoding = stream.encoding
        if codecs.lookup(encoding).name == "ascii":
            encoding = "utf-8"
        try:
            stream.flush()
            if name == "stderr":
                stream.reconfigure(encoding=encoding, errors=ESCAPE)
                continue
            sys.stdout = _Output(
                open(stream.fileno(), "wb", closefd=False),  # fd 1 stays open
                encoding=encoding,
                errors=ESCAPE,
                line_buffering=stream.line_buffering,
            )
        except (OSError, ValueError):
            pass  # a stream that cannot be flushed now keeps its settings


def stdout_failure() -> str | None:
    """Why writing standard output failed (a full disk, an I/O error), or None when the
    OSError being handled did not come from it."""
    failure = getattr(sys.stdout, "failure", None)
    if failure is None:
        return None
    return failure.strerror or type(failure).__name__


def silence_stdout() -> None:
    """Standard output pointed at the null device: what it still holds is dropped there, so the
    interpreter's final flush cannot fail again (and print a traceback)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
    finally:
        os.close(devnull)
