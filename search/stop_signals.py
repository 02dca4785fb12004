"""SIGTERM and SIGHUP (what a scheduler, a closed terminal or a preempted VM sends) stop a
search as Ctrl-C does: Ray saves the experiment, the summary and the resume command are
printed, and the exit code says which signal it was (143, 129; 130 for Ctrl-C).

Ray Tune handles SIGINT (and SIGUSR1) only. A scheduler sends SIGTERM to the whole process
group, which holds the processes of a local Ray too; Ray starts them with SIGINT blocked, so
Ctrl-C reaches only the driver, and genretune starts them with SIGTERM and SIGHUP blocked as
well (a blocked mask is inherited by every process they start): the driver alone decides how
the search ends, and stops them itself."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n))


class SearchStopped(KeyboardInterrupt):
    """A stop signal arrived before Ray's fit() began: nothing ran yet, nothing to save."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def blocked_in_children() -> Iterator[None]:
    """Processes started inside this block (a local Ray) do not receive SIGTERM and SIGHUP."""
    if not STOP_SIGNALS or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class StopSignals:
    """Turns SIGTERM and SIGHUP into Ctrl-C for the search inside: during Ray's fit() they
    call the SIGINT handler Ray installed (it saves and ends the run); before it, they raise
    SearchStopped. `signum` is the first stop signal received (SIGINT for Ctrl-C is told
    apart by the caller)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame) -> None:
        if self.signum is None:
            self.signum = signum
        handler = signal.getsignal(signal.SIGINT)
        if callable(handler) and handler is not signal.default_int_handler:
            # Ray's during fit() (saves the experiment and ends the run), else a watcher's.
            handler(signal.SIGINT, frame)
            return
        raise SearchStopped(signum)

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.getsignal(signum)
                signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            if handler is not None:
                signal.signal(signum, handler)
