"""The experiment's writer lock: `<name>.lock` beside the experiment dir, held by the one
search that writes the experiment, touched every HEARTBEAT_S seconds. A second writer is
refused at once; a lock whose writer is gone (its pid dead on this host, or untouched for
STALE_AFTER_S from another host) is taken over."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from genretune.data import InputError
from genretune.results.experiment_dir import lock_path

# The writer touches its lock this often; a lock from another host untouched for STALE_AFTER_S
# belongs to a writer that is gone (one on this host is checked by its pid).
HEARTBEAT_S = 10.0
STALE_AFTER_S = 90.0


def _now() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


def _process_start(pid: int) -> str | None:
    """The start time of a process on this host (guards against a reused pid), or None."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive_here(pid: int, started: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, someone else's
    except OSError:
        return True
    now_started = _process_start(pid)
    return started is None or now_started is None or now_started == started


def read_lock(path: Path) -> dict[str, Any] | None:
    """Who holds the writer lock of the experiment at `path` (host, pid, since, age of its last
    heartbeat in seconds, and whether that writer is gone), or None when nobody does."""
    lock = lock_path(path)
    try:
        text = lock.read_text(encoding="utf-8")
        age = max(0.0, time.time() - lock.stat().st_mtime)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError:
        return {"host": "?", "pid": None, "since": "?", "age_s": 0.0, "gone": False}
    try:
        holder = json.loads(text)
        if not isinstance(holder, dict):
            raise ValueError
    except ValueError:
        # Cut while it was being written: its writer is gone once the heartbeat is stale.
        holder = {"host": "?", "pid": None, "since": "?"}
    holder["age_s"] = age
    pid = holder.get("pid")
    if holder.get("host") == socket.gethostname() and isinstance(pid, int):
        holder["gone"] = not _alive_here(pid, holder.get("started"))
    else:
        holder["gone"] = age > STALE_AFTER_S
    return holder


def describe_holder(holder: dict[str, Any]) -> str:
    return f"host {holder.get('host')}, pid {holder.get('pid')}, since {holder.get('since')}"


class WriterLock:
    """The one writer of an experiment: an exclusively created `<name>.lock` beside it (works
    on NFS-like shared storage, where flock may not), with a heartbeat. A lock whose writer is
    gone (its pid on this host, or no heartbeat for STALE_AFTER_S from another host) is taken
    over with a note."""

    def __init__(self, path: Path, command: str = "search") -> None:
        self.path = Path(path)
        self.file = lock_path(self.path)
        self.command = command
        self.token = uuid.uuid4().hex
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.held = False

    def refusal(self, holder: dict[str, Any]) -> InputError:
        return InputError(
            f"{self.path.name}: in use by another genretune search ({describe_holder(holder)}; "
            f"lock {self.file}): wait for it to end, or stop it"
        )

    def check_free(self) -> None:
        """Refuse at once when a live writer holds the lock (nothing is created)."""
        holder = read_lock(self.path)
        if holder is not None and not holder["gone"]:
            raise self.refusal(holder)

    def acquire(self) -> None:
        for _ in range(3):
            try:
                fd = os.open(self.file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder = read_lock(self.path)
                if holder is None:
                    continue  # released in between
                if not holder["gone"]:
                    raise self.refusal(holder) from None
                self._take_over(holder)
                continue
            except OSError as exc:
                raise InputError(
                    f"{self.file}: cannot create the experiment's lock ({exc.strerror or exc})"
                ) from None
            payload = {
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "started": _process_start(os.getpid()),
                "since": _now(),
                "command": self.command,
                "token": self.token,
            }
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(json.dumps(payload) + "\n")
            self.held = True
            self._thread = threading.Thread(target=self._beat, daemon=True, name="lock-heartbeat")
            self._thread.start()
            return
        raise InputError(f"{self.file}: could not take the experiment's lock; try again")

    def _take_over(self, holder: dict[str, Any]) -> None:
        # Renamed first: of two processes taking over at once, only one rename succeeds.
        stale = self.file.with_name(f".{self.file.name}.{self.token}.stale")
        with contextlib.suppress(FileNotFoundError):
            os.rename(self.file, stale)
            stale.unlink(missing_ok=True)
            print(
                f"note: {self.path.name}: took over the lock of a search that is gone "
                f"({describe_holder(holder)})",
                file=sys.stderr,
            )

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            if not self._still_ours():
                return
            with contextlib.suppress(OSError):
                os.utime(self.file)

    def _still_ours(self) -> bool:
        try:
            return json.loads(self.file.read_text(encoding="utf-8")).get("token") == self.token
        except (OSError, ValueError, AttributeError):
            return False

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        self._stop.set()
        if self._still_ours():
            with contextlib.suppress(FileNotFoundError):
                self.file.unlink()

    def __enter__(self) -> WriterLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
