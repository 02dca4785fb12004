"""Every `genretune` command of README.md and docs/ runs, in each document's order, on small
stand-ins for what the docs assume exists (an FMA archive, a feature dir, MP3 clips, a model
trained on FMA features, a predictions file, the space file docs/search.md shows).

A command is run as written, with:
- flags appended that make it tiny (the last value of a flag wins): a search runs 2 trials of
  2 epochs on 2% of the synthetic data (the full profile's at 4 base channels) and no GPU, a
  training run 1 epoch;
- its placeholders replaced (PLACEHOLDERS below: a cluster address, a model dir's stamp, a
  trial id), each checked to still be in the document;
- `genretune dashboard` started, asked for its page, and stopped with Ctrl-C.
docs/cluster.md runs whole, `ray start` to `ray stop`, in tests/test_cluster_walkthrough.py;
tests/test_docs.py checks that every command of every document parses.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from fma_fixture import make_fma
from helpers import DOCS, doc_code_blocks, doc_commands, make_feature_dir

# Starts Ray or trains real models: the full suite (make test), not the fast lane.
pytestmark = pytest.mark.slow

GENRETUNE = str(Path(sys.executable).with_name("genretune"))
RUN_HERE = ["README.md", "data.md", "training.md", "search.md", "predict.md"]
RUN_ELSEWHERE = {"cluster.md": "tests/test_cluster_walkthrough.py"}

TINY_SEARCH = ["--epochs", "2", "--num-samples", "2", "--gpus-per-trial", "0",
               "--progress-interval", "1000"]  # fmt: skip
TINY_SYNTHETIC = ["--synthetic-scale", "0.02"]
TINY_MODEL = ["--base-channels", "4"]


def test_every_document_with_commands_is_run():
    with_commands = {p.name for p in DOCS if _commands_of(p.name)}
    assert with_commands == set(RUN_HERE) | set(RUN_ELSEWHERE)


def _commands_of(doc: str) -> list[str]:
    (path,) = [p for p in DOCS if p.name == doc]
    return [c for block in doc_code_blocks(path, ("bash", "sh", "shell", "console"))
            for c in doc_commands(block)]  # fmt: skip


def _tiny(argv: list[str]) -> list[str]:
    """The flags appended to a documented command."""
    command = argv[1] if len(argv) > 1 else ""
    if command == "search" and "--resume" not in argv:
        extra = list(TINY_SEARCH)
        if "--data" not in argv:
            extra += TINY_SYNTHETIC
        if "--profile" in argv and "--space" not in argv:
            extra += TINY_MODEL  # the full profile's widths; the demo's (8, 16) stay searched
        return extra
    if command == "train":
        extra = ["--epochs", "1", "--no-progress"]
        if "--config" not in argv and "--data" not in argv:
            extra += TINY_SYNTHETIC + TINY_MODEL
        return extra
    return []


# --- what the docs assume exists -------------------------------------------------------------


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, isolated_cache) -> Path:
    """The files the documents' commands read, made once: an FMA archive (clips long enough
    for prepare-fma's defaults), its features, a model trained on them, clips, a predictions
    file and docs/search.md's space file."""
    root = tmp_path_factory.mktemp("doc-inputs")
    make_fma(root, n_tracks=24, seconds=10.5)
    for name in ("clips", "new_clips"):
        (root / name).mkdir()
        for clip in sorted((root / "fma_small").rglob("*.mp3"))[4:7]:
            shutil.copy(clip, root / name / clip.name)
    features = root / "data" / "fma_large"
    _genretune(["data", "prepare-fma", "--metadata", "fma_metadata", "--audio", "fma_small",
                "--out", str(features), "--workers", "1"], cwd=root)  # fmt: skip
    models = root / "models" / "trained_models"
    _genretune(["train", "--data", str(features), "--epochs", "1", *TINY_MODEL,
                "--experiment-name", "fma", "--output-dir", str(models),
                "--no-progress"], cwd=root)  # fmt: skip
    (model,) = models.iterdir()
    shutil.copy(model / "config.json", root / "exported.json")  # a model card trains again
    np.save(root / "x.npy", np.load(features / "features.npy")[:5])
    rng = np.random.default_rng(0)
    y_true = (rng.random((60, 5)) < 0.3).astype(np.uint8)
    y_true[np.arange(5), np.arange(5)] = 1
    y_score = np.clip(0.6 * y_true + 0.5 * rng.random(y_true.shape), 0, 1)
    np.savez(root / "preds.npz", y_true=y_true, y_score=y_score)
    make_feature_dir(root / "path" / "to" / "feature_dir")
    (root / "my_space.yaml").write_text(_space_file_shown())
    return root


def _space_file_shown() -> str:
    """docs/search.md's example space file (a YAML block inside a list item)."""
    text = _doc("search.md").read_text()
    (block,) = re.findall(r"^( *)```yaml\n(.*?)^\1```", text, re.S | re.M)
    return textwrap.dedent(block[1])


def _doc(name: str) -> Path:
    (path,) = [p for p in DOCS if p.name == name]
    return path


def _sandbox(inputs: Path, tmp_path: Path) -> Path:
    """A fresh working directory holding the inputs (its runs/, models/ and outputs its own)."""
    work = tmp_path / "work"
    shutil.copytree(inputs, work, symlinks=True)
    return work


def _fma_model(work: Path) -> str:
    (model,) = (work / "models" / "trained_models").glob("fma_*")
    return str(model.relative_to(work))


def _newest_model(prefix: str) -> Callable[[Path], str]:
    def find(work: Path) -> str:
        found = sorted((work / "models" / "trained_models").glob(f"{prefix}_*"))
        assert found, f"no model dir {prefix}_* to stand for the doc's"
        return str(found[-1].relative_to(work))

    return find


def _a_trial_of(experiment: str) -> Callable[[Path], str]:
    def find(work: Path) -> str:
        found = sorted((work / "runs" / experiment).glob("trial_*/params.json"))
        assert found, f"no trial of {experiment} to stand for the doc's"
        return found[0].parent.name.removeprefix("trial_")

    return find


def _cluster_address(work: Path) -> str:
    """The session's running Ray (the test's cluster): a search joins it as it would a head."""
    import ray

    return ray.get_runtime_context().gcs_address


# Per document: a placeholder (a regular expression) and what stands for it (a string, or a
# function of the working directory, called when a command needs it).
PLACEHOLDERS: dict[str, dict[str, str | Callable[[Path], str]]] = {
    "README.md": {
        r"HEAD:6379": _cluster_address,
        r"/shared/runs": "shared/runs",
        r"models/trained_models/NAME_STAMP": _fma_model,
    },
    "data.md": {
        # The stand-in archive has 24 tracks: at most 5 of a genre in the training split.
        r"--min-samples-per-genre 50": "--min-samples-per-genre 3",
    },
    "training.md": {
        r"models/trained_models/raw_20261124_144252": _newest_model("raw"),
        # An exported configuration (no search runs in this document).
        r"(?<=--config )best\.json": "exported.json",
    },
    "search.md": {
        r"HEAD:6379": _cluster_address,
        r"/shared/runs": "shared/runs",
        r"(?<=genretune results )demo\b|(?<=genretune export )demo\b": "exp1",
        r"bdd0abb2": _a_trial_of("exp1"),
        # Two trials of two epochs cover fewer genres than a real search's front.
        r"val_coverage >= 0\.7": "val_coverage >= 0",
    },
    "predict.md": {
        r"models/trained_models/multilabel_cnn_\d+_\d+": _fma_model,
        r"MODEL_DIR": _fma_model,
    },
}


def _as_run(doc: str, command: str, work: Path) -> list[str]:
    for pattern, value in PLACEHOLDERS.get(doc, {}).items():
        if re.search(pattern, command):
            text = value(work) if callable(value) else value
            command = re.sub(pattern, text.replace("\\", "\\\\"), command)
    argv = shlex.split(command)
    return argv + _tiny(argv)


@pytest.mark.parametrize("doc", list(PLACEHOLDERS))
def test_each_placeholder_is_still_in_its_document(doc):
    commands = _commands_of(doc)
    for pattern in PLACEHOLDERS[doc]:
        assert any(re.search(pattern, c) for c in commands), f"{doc}: no {pattern!r} any more"


@pytest.mark.parametrize("doc", RUN_HERE)
def test_the_documents_commands_run_in_order(doc, inputs, tmp_path, local_ray, monkeypatch):
    """In this process (its searches on the session's Ray), but for a command that joins a
    cluster (`--address`: a driver of its own) and the dashboard (a server)."""
    from genretune.search.cli import main

    work = _sandbox(inputs, tmp_path)
    monkeypatch.chdir(work)
    commands = _commands_of(doc)
    assert commands, doc
    for command in commands:
        argv = _as_run(doc, command, work)
        what = f"{doc}: `{command}` as `{shlex.join(argv)}`"
        if argv[1] == "dashboard":
            _serve_once(argv, work)
        elif "--address" in argv:
            _genretune(argv[1:], cwd=work, what=what)
        else:
            loopback_only = os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")
            assert main(argv[1:]) == 0, what
            # A local search's loopback-only setting is its own: a `ray start` run later by
            # the same process must be able to take other nodes.
            assert os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER") == loopback_only, what


def _genretune(args: list[str], cwd: Path, what: str = "") -> subprocess.CompletedProcess:
    res = subprocess.run([GENRETUNE, *args], cwd=cwd, capture_output=True, text=True,
                         timeout=600, env=_env())  # fmt: skip
    assert res.returncode == 0, f"{what or shlex.join(args)}: exit {res.returncode}\n" + (
        res.stderr[-3000:] or res.stdout[-3000:]
    )
    return res


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)
    return env


def _serve_once(argv: list[str], work: Path) -> None:
    """Start the dashboard (on any free port), fetch its page, stop it with Ctrl-C."""
    server = subprocess.Popen(
        [GENRETUNE, *argv[1:], "--port", "0"],
        cwd=work,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        server.stdout.readline()  # what it serves
        url = server.stdout.readline().strip()
        assert url.startswith("http://"), (url, server.stderr.read() if server.poll() else "")
        with urllib.request.urlopen(url, timeout=30) as page:
            assert page.status == 200
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=30) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def test_the_stand_in_model_is_a_model_dir_of_fma_features(inputs):
    card = json.loads((inputs / _fma_model(inputs) / "config.json").read_text())
    assert card["features"]["audio"], "predict --audio needs prepare-fma's settings in the card"
