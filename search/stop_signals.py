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
import logging
import os
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


class _WithoutRaysResumeAdvice(logging.Filter):
    """Ray logs how to resume with its Python API when a run is interrupted; genretune prints
    the command that does it (with the settings Ray does not know), on a line of its own."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Resume experiment with" not in record.getMessage()


def keep_rays_resume_advice_back() -> None:
    tune_logger = logging.getLogger("ray.tune.tune")
    if not any(isinstance(f, _WithoutRaysResumeAdvice) for f in tune_logger.filters):
        tune_logger.addFilter(_WithoutRaysResumeAdvice())


class SearchInterrupted(KeyboardInterrupt):
    """The search was stopped by Ctrl-C (SIGINT) or SIGUSR1 before it ended on its own; Ray
    saved its state, so `genretune search --resume NAME` finishes it. `results` holds what the
    trials reported so far."""

    def __init__(self, results, unfinished: int, signum: int = signal.SIGINT):
        super().__init__(f"{unfinished} trial(s) unfinished")
        self.results = results
        self.unfinished = unfinished
        self.signum = signum  # SIGINT (Ctrl-C), or SIGTERM / SIGHUP handled alike


class StorageFull(SearchInterrupted):
    """The experiment's storage ran (nearly) full: the search stopped as on Ctrl-C, saving what
    it could; `reason` says what was seen. `results` is None when Ray could not save."""

    def __init__(self, results, unfinished: int, reason: str):
        super().__init__(results, unfinished)
        self.reason = reason


class InterruptWatch:
    """Tells whether Ray Tune's fit() inside was stopped by a signal. Ray catches Ctrl-C
    (SIGINT) and SIGUSR1, saves the experiment and returns from fit() as if it had finished;
    its handler then puts back the SIGINT handler that was in place before fit(). A sentinel
    installed here is therefore in place after fit() only if Ray's handler ran. Not watching
    (`interrupted` stays False) where Ray installs no handler here: off the main thread, with
    TUNE_DISABLE_SIGINT_HANDLER=1 (Ctrl-C then raises KeyboardInterrupt through fit()), or
    through Ray Client (fit() runs on the cluster); the saved state tells there."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.interrupted = False

    def __enter__(self) -> InterruptWatch:
        self._watching = (
            self.enabled
            and threading.current_thread() is threading.main_thread()
            and not int(os.getenv("TUNE_DISABLE_SIGINT_HANDLER", "0") or 0)
            and signal.getsignal(signal.SIGINT) is not None  # None: set outside Python
        )
        if self._watching:
            self._previous = {s: signal.getsignal(s) for s in _CAUGHT_BY_RAY}

            self._caught = False

            def sentinel(signum, frame):
                self._caught = True
                raise KeyboardInterrupt

            self._sentinel = sentinel
            signal.signal(signal.SIGINT, sentinel)
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if self._watching:
            self.interrupted = signal.getsignal(signal.SIGINT) is self._sentinel
            # Ray leaves its own handlers behind after a finished run: put ours back.
            for signum, handler in self._previous.items():
                if handler is not None:
                    signal.signal(signum, handler)
            if self._caught and exc_type is None and not self.interrupted:
                # A Ctrl-C before Ray's handler was in place whose KeyboardInterrupt was lost:
                # raised while the main thread ran a finalizer (a weakref callback, __del__),
                # where Python only reports it. The run went on to its end; honour it now.
                raise KeyboardInterrupt


_CAUGHT_BY_RAY = (signal.SIGINT, *((signal.SIGUSR1,) if hasattr(signal, "SIGUSR1") else ()))
