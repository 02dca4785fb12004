"""Starting a local Ray, or reaching a cluster, and showing it can run a trial: within seconds,
with one line when it cannot."""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import tempfile
from pathlib import Path

from genretune.data import InputError, first_line
from genretune.search.settings import Resources

LOOPBACK = "127.0.0.1"
UNBOUNDED = 10**6  # trials a node holds when a trial asks for neither CPUs nor GPUs

# A local Ray's Unix sockets: <temp dir>/ray/session_<date>_<time>_<microseconds>_<pid>/sockets/
# plasma_store (the longest of them; raylet is the other), and the longest path a Unix socket
# takes (sun_path holds 108 bytes on Linux, 104 on macOS, with the final NUL): Ray refuses
# longer ones with a traceback after it has created its session directory.
SOCKET_PATH_MAX = (104 if sys.platform == "darwin" else 108) - 1
SESSION_DATE = "2000-01-01_00-00-00_000000"  # strftime("%Y-%m-%d_%H-%M-%S_%f"): fixed width
LONGEST_SOCKET = "plasma_store"


def _ray_temp_dir() -> tuple[str, str]:
    """(variable, directory) of the temp dir a local Ray uses, as Ray chooses it:
    RAY_TMPDIR, else TMPDIR (on Linux), else /tmp."""
    for variable in ("RAY_TMPDIR", "TMPDIR"):
        if variable in os.environ and (variable == "RAY_TMPDIR" or sys.platform == "linux"):
            return variable, os.environ[variable]
    unix = sys.platform.startswith(("linux", "darwin"))
    return "TMPDIR", "/tmp" if unix else tempfile.gettempdir()


def local_socket_path(temp_dir: str, pid: int | None = None) -> str:
    """The longest Unix socket path a local Ray started by this process will use."""
    session = f"session_{SESSION_DATE}_{os.getpid() if pid is None else pid}"
    return os.path.join(temp_dir, "ray", session, "sockets", LONGEST_SOCKET)


def check_local_environment() -> None:
    """A local Ray can start here: its temp dir (TMPDIR) takes its files and its sockets'
    paths, and HOME takes its authentication token. One line naming the variable otherwise,
    before Ray (or genretune) has written anything."""
    from genretune.data.sources import directory_problem, variable_error

    if os.name != "posix":
        return
    variable, temp_dir = _ray_temp_dir()
    if not temp_dir:
        raise InputError(f"{variable} is set but empty: unset it or give a directory")
    problem = directory_problem(Path(temp_dir) / "ray")
    if problem:
        raise variable_error(
            variable, temp_dir, problem, "a local Ray keeps its sockets and logs there"
        )
    socket_path = local_socket_path(temp_dir)
    length = len(os.fsencode(socket_path))
    if length > SOCKET_PATH_MAX:
        room = len(os.fsencode(temp_dir)) - (length - SOCKET_PATH_MAX)
        raise InputError(
            f"{variable} {temp_dir}: too long for a local Ray's Unix sockets (their paths "
            f"would be {length} bytes, the limit is {SOCKET_PATH_MAX}): use a {variable} of at "
            f"most {max(room, 1)} bytes, e.g. {variable}=/tmp"
        )
    _check_token_home()


def _check_token_home() -> None:
    """A new local Ray enables token authentication and writes its token to
    $HOME/.ray/auth_token unless one is given or exists (Ray's authentication_token_setup)."""
    from genretune.data.sources import directory_problem, variable_error

    if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
        return
    if os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH"):
        return
    home = Path.home()
    if (home / ".ray" / "auth_token").is_file():
        return
    problem = directory_problem(home) or directory_problem(home / ".ray")
    if problem:
        raise variable_error(
            "HOME",
            home,
            problem,
            "a local Ray writes its authentication token to $HOME/.ray: set HOME to a writable "
            "directory",
        )


def check_address(address: str, timeout: float = 5.0) -> None:
    """A Ray cluster answers at HOST:PORT (a GCS address or ray://HOST:PORT), within seconds:
    ray.init would otherwise retry for minutes."""
    if address == "auto":
        return
    hostport = address.removeprefix("ray://").rstrip("/")
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(f"--address {address}: expected HOST:PORT (e.g. 10.0.0.5:6379) or auto")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else exc.strerror or str(exc)
        raise InputError(f"--address {address}: no Ray cluster answers there ({reason})") from None


def trials_at_once(resources: Resources) -> int:
    """How many trials the cluster's live nodes can run side by side now, capped by
    --max-concurrent (a node holds as many as its CPUs and GPUs allow)."""
    import ray

    total = 0
    for node in (n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")):
        fits = [
            node.get(kind, 0) // need
            for kind, need in (("CPU", resources.cpus_per_trial), ("GPU", resources.gpus_per_trial))
            if need
        ]
        total += int(min(fits)) if fits else UNBOUNDED
    return min(total, resources.max_concurrent or total)


def check_trial_fits(resources: Resources) -> None:
    """Some node of the cluster can hold one trial's CPUs and GPUs; else the search would wait
    for resources forever."""
    import ray

    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    needs = {"CPU": resources.cpus_per_trial, "GPU": resources.gpus_per_trial}
    if any(all(node.get(k, 0) >= v for k, v in needs.items()) for node in nodes):
        return
    gpus = max((node.get("GPU", 0) for node in nodes), default=0)
    cpus = max((node.get("CPU", 0) for node in nodes), default=0)
    if resources.gpus_per_trial > gpus:
        where = (
            ("this machine has no GPU" if len(nodes) == 1 else "no node of the cluster has a GPU")
            if not gpus
            else f"its nodes have at most {gpus:g}"
        )
        raise InputError(f"--gpus-per-trial {resources.gpus_per_trial:g}: {where}")
    raise InputError(
        f"--cpus-per-trial {resources.cpus_per_trial:g}: the nodes have at most {cpus:g} CPUs"
    )


@contextlib.contextmanager
def _stderr_kept_back(show: bool):
    """Ray's start-up lines (its C++ core writes to file descriptor 2) held back, and shown
    only when `show`: a search prints its own progress, and a refused one only its error.
    Yields a list that holds the held-back text once the block is left."""
    captured = tempfile.TemporaryFile(mode="w+b")
    saved_fd = os.dup(2)
    sys.stderr.flush()
    os.dup2(captured.fileno(), 2)
    text: list[str] = []
    try:
        yield text
    finally:
        sys.stderr.flush()
        os.dup2(saved_fd, 2)
        os.close(saved_fd)
        captured.seek(0)
        text.append(captured.read().decode(errors="replace"))
        if show:
            sys.stderr.write(text[0])
        captured.close()


def auth_refusal(address: str, ray_said: str) -> str | None:
    """The one line for a cluster that answered but refused this driver's authentication
    (Ray's core says InvalidAuthToken), naming what to set; None for any other failure."""
    if "InvalidAuthToken" not in ray_said and "Unauthenticated" not in ray_said:
        return None
    mode = os.environ.get("RAY_AUTH_MODE")
    if not mode or mode.lower() != "token":
        fix = (
            "set RAY_AUTH_MODE=token and the cluster's token (RAY_AUTH_TOKEN or ~/.ray/auth_token)"
        )
    else:
        fix = "this driver's token (RAY_AUTH_TOKEN or ~/.ray/auth_token) is not the cluster's"
    return f"--address {address}: the Ray cluster refused this driver's authentication: {fix}"


def connect_ray(address: str | None, verbose: bool) -> bool:
    """Start a local Ray or join the cluster at `address`; True when this call started Ray."""
    import ray

    if ray.is_initialized():
        return False
    if address:
        check_address(address)
    # If something answers that is not a Ray cluster, say so within seconds (Ray would retry
    # for about 20 s, printing a warning line per attempt).
    wait = "RAY_gcs_server_port_wait_time_s"
    saved = os.environ.get(wait)
    if address:
        os.environ.setdefault(wait, "5")
    said: list[str] = []
    try:
        with _stderr_kept_back(verbose) as said:
            _ray_init(address, verbose)
    except (ConnectionError, RuntimeError) as exc:
        if not address:
            raise
        refusal = auth_refusal(address, "".join(said))
        if refusal:
            raise InputError(refusal) from None
        reason = first_line(exc)
        raise InputError(f"--address {address}: not a reachable Ray cluster ({reason})") from None
    finally:
        if saved is None:
            os.environ.pop(wait, None)
    return True


def _ray_init(address: str | None, verbose: bool) -> None:
    import ray

    if ray.is_initialized():
        return
    if address:
        # Code travels with the job unless the nodes have genretune installed themselves.
        from genretune.search.code_shipping import staged_code

        code = staged_code()
        ray.init(address=address, runtime_env={"py_modules": [code]}, log_to_driver=verbose)
    else:
        # A Ray of our own listens on the loopback interface only.
        from genretune.results.internals import (
            end_local_ray_without_grace_period,
            keep_local_ray_on_loopback,
        )

        check_local_environment()
        keep_local_ray_on_loopback()
        ray.init(
            include_dashboard=False,
            log_to_driver=verbose,
            configure_logging=verbose,
            _node_ip_address=LOOPBACK,
        )
        # Its processes ignore SIGTERM (stop_signals.blocked_in_children): end them at once.
        end_local_ray_without_grace_period()


def ray_decoder(address: str):
    """A prepare-fma decoder (data.fma.Decoder) running each chunk of clips as a Ray task on
    the cluster at `address` (the audio dir must be readable on every node)."""

    def results(audio_dir, spec, rows):
        import ray

        from genretune.data.fma_decoding import chunks, decode_chunk

        if not ray.is_initialized():
            # The decoding code travels with the job; nodes need numpy, scipy and soundfile.
            from genretune.search.code_shipping import staged_code

            code = staged_code(("data",))
            ray.init(address=address, runtime_env={"py_modules": [code]}, log_to_driver=False)
        task = ray.remote(num_cpus=1)(decode_chunk)
        refs = [task.remote(str(audio_dir), spec, c) for c in chunks(rows, 16)]
        while refs:
            ready, refs = ray.wait(refs, num_returns=1)
            yield ray.get(ready[0])

    return results
