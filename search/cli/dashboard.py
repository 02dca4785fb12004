"""`genretune dashboard`: optuna-dashboard on an experiment's Optuna study, running or finished.

It serves the study the experiment itself reads (its optuna.db, or the `--optuna-storage` the
search was given), opened without creating or migrating tables: watching a live search
writes nothing but the notes a user types into the page. The server listens on 127.0.0.1
unless --host says otherwise."""

from __future__ import annotations

import argparse
import signal
import socket
import socketserver
import sys
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from genretune.data import InputError, first_line
from genretune.results import experiment_dir as layout
from genretune.results.experiment import resolve_experiment_path

INSTALL_HINT = "pip install 'genretune[dashboard]'"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("experiment", help="experiment name (under --storage-path) or directory")
    p.add_argument("--storage-path", default="runs")
    p.add_argument("--port", type=int, default=8080, help="port to serve on (0: any free one)")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1; on a cluster head, reach it through an "
        "SSH tunnel rather than exposing it)",
    )


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a browser's open connections do not hold up Ctrl-C


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (wsgiref's name)
        pass  # one line per request would bury the URL


def open_study_storage(path: Path) -> tuple[Any, str]:
    """The experiment's Optuna storage, opened read-as-is, and its study name."""
    import optuna

    settings = layout.read_settings(path)
    url = layout.study_url(path, settings)
    name = layout.study_name(path, settings)
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///") :]).is_file():
        raise InputError(f"{path}: has no Optuna study ({layout.OPTUNA_DB} is missing)")
    try:
        storage = optuna.storages.RDBStorage(url, skip_table_creation=True)
        storage.get_study_id_from_name(name)
    except KeyError:
        raise InputError(f"{url}: holds no study named {name!r}") from None
    except Exception as exc:  # SQLAlchemy raises many types (no driver, refused, not a DB)
        first = first_line(exc)
        raise InputError(f"{url}: cannot open the study ({first[:200]})") from None
    return storage, name


def run(args: argparse.Namespace) -> int:
    try:
        from optuna_dashboard import wsgi
    except ImportError:
        raise InputError(f"genretune dashboard needs optuna-dashboard: {INSTALL_HINT}") from None
    if not 0 <= args.port <= 65535:
        raise InputError(f"--port {args.port}: not a port number (0-65535)")
    path = resolve_experiment_path(args.experiment, args.storage_path)
    storage, name = open_study_storage(path)
    study_id = storage.get_study_id_from_name(name)
    try:
        server = make_server(
            args.host, args.port, wsgi(storage), _ThreadingServer, handler_class=_QuietHandler
        )
    except socket.gaierror as exc:
        raise InputError(f"--host {args.host}: not an address here ({exc.strerror})") from None
    except OSError as exc:
        raise InputError(
            f"--port {args.port} on {args.host}: cannot listen ({exc.strerror})"
        ) from None
    host, port = server.server_address[:2]
    shown = "localhost" if host in ("127.0.0.1", "::1") else host
    print(f"optuna-dashboard: study {name!r} of {path}")
    print(f"http://{shown}:{port}/dashboard/studies/{study_id}", flush=True)
    print("(Ctrl-C stops it)", file=sys.stderr, flush=True)
    # Ctrl-C, and SIGTERM (a service manager, `kill`), stop it, also where it was started in
    # the background of a script (which starts it with SIGINT ignored).
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.default_int_handler)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("optuna-dashboard stopped", file=sys.stderr)
    finally:
        server.server_close()
    return 0
