"""Builders of small test inputs (feature dirs, configs)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np


def make_feature_dir(
    directory: Path,
    n: int = 60,
    n_genres: int = 4,
    shape: tuple[int, int] = (16, 16),
    with_split: bool = True,
    seed: int = 0,
) -> Path:
    """A small valid feature dir whose genres are learnable from one mel band each."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((n, n_genres), dtype=np.uint8)
    labels[np.arange(n), rng.integers(0, n_genres, n)] = 1
    features = rng.normal(0, 0.3, size=(n, *shape)).astype(np.float32)
    for g in range(n_genres):
        features[labels[:, g] == 1, (g * 3) % shape[0], :] += 2.0
    directory.mkdir(parents=True, exist_ok=True)
    np.save(directory / "features.npy", features)
    np.save(directory / "labels_multilabel.npy", labels)
    (directory / "genres.json").write_text(json.dumps([f"genre{g}" for g in range(n_genres)]))
    if with_split:
        split = np.arange(n) % 5
        split = np.where(split < 3, 0, np.where(split == 3, 1, 2)).astype(np.int8)
        np.save(directory / "split.npy", split)
    return directory


TINY_SEARCH = ["--synthetic-scale", "0.02", "--base-channels", "4", "--progress-interval", "1000"]


def search_settings(storage: Path, *extra: str):
    """SearchSettings parsed from `genretune search` flags, with tiny defaults."""
    from genretune.search.cli.search import settings_from_argv

    return settings_from_argv([*TINY_SEARCH, "--storage-path", str(storage), *extra])


def default_sigint() -> None:
    """SIGINT as a terminal delivers it (a shell's background job would ignore it)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def interrupt_search(
    argv: list[str], env: dict, ready: Callable[[], bool], sig: int = signal.SIGINT
) -> subprocess.CompletedProcess:
    """Run `genretune ARGV` in a process group of its own, send it `sig` once ready() holds
    (within 300 s), wait for it, and kill what is left of the group (its own local Ray, nothing
    else). Returns its exit code and what it printed (stdout and stderr together)."""
    genretune = str(Path(sys.executable).with_name("genretune"))
    proc = subprocess.Popen([genretune, *argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env, start_new_session=True,
                            preexec_fn=default_sigint)  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while not ready():
            assert proc.poll() is None, f"the search ended early:\n{proc.stdout.read()[-3000:]}"
            assert time.monotonic() < deadline, "the search did not get going"
            time.sleep(0.5)
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=120)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
