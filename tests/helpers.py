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


def descendant_pids(root: int) -> list[int]:
    """`root` and every process below it (children, grandchildren, ...), `root` first."""
    from genretune.results.internals import process_descendants

    return [root, *process_descendants([root])]


# Where tests keep what a person may want to look at afterwards (the dashboard's screenshot).
ARTEFACTS = Path(__file__).resolve().parent.parent / "test-artefacts"

# Chromium's headless flags for a closed network: without the background-networking ones it
# tries to reach Google's hosts at every start.
_CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,900",
    # The page is a single-page app: let its scripts fetch the study before the page is read.
    "--virtual-time-budget=20000",
]


def chromium() -> str:
    import shutil

    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    raise AssertionError(
        "no Chromium: install Debian's chromium package (`make test` does, as root)"
    )


def headless_chromium(url: str, profile: Path, *action: str) -> subprocess.CompletedProcess:
    """Chromium, headless, on `url` with a new empty profile: `--dump-dom` or
    `--screenshot=FILE` as `action`."""
    return subprocess.run(
        [chromium(), *_CHROMIUM_FLAGS, f"--user-data-dir={profile}", *action, url],
        capture_output=True,
        text=True,
        timeout=120,
    )


def visible_text(html: str) -> str:
    """The text of a page's DOM, its markup, scripts and styles removed, spaces collapsed."""
    import re

    html = re.sub(r"<(script|style)\b.*?</\1>", " ", html, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).strip()


DOCS = [Path(__file__).resolve().parents[1] / "README.md"] + sorted(
    (Path(__file__).resolve().parents[1] / "docs").glob("*.md")
)


def doc_code_blocks(path: Path, languages: tuple[str, ...]) -> list[str]:
    """The fenced code blocks of a Markdown file in the given languages, in order."""
    import re

    pattern = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)
    return [code for lang, code in pattern.findall(path.read_text()) if lang in languages]


def doc_commands(code: str) -> list[str]:
    """The `genretune ...` commands of a shell block (continuations joined, comments and
    prompts dropped, shell variables replaced by their name)."""
    import re

    joined = code.replace("\\\n", " ")
    out = []
    for line in joined.splitlines():
        line = line.strip().removeprefix("$ ")
        for part in re.split(r"\s*(?:&&|;|\|\|)\s*", line.split(" #")[0]):
            part = re.sub(r"\$\{?(\w+)\}?", r"\1", part)
            if part.startswith("genretune "):
                out.append(part)
    return out


def run_doc_python(code: str, cwd: Path, replacements: dict[str, str], setup: str = "") -> None:
    """Run a docs Python example in a new interpreter in `cwd`, as a user would paste it, with
    its placeholder strings replaced (a model dir's name, ...); fails with its stderr."""
    import subprocess
    import sys

    for old, new in replacements.items():
        assert old in code, f"the example no longer has {old!r}"
        code = code.replace(old, new)
    res = subprocess.run([sys.executable, "-c", setup + code], cwd=cwd, capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
