"""Bad input through the real `genretune` entry point, one table over every command.

Every case runs `genretune ARGV` in a process of its own: forked from a server that imported the
CLI once (tests/cli_runner.py, so the table takes a minute, not six), and for at least one case
of each kind also through the installed console script.

Each case must end with exit code 2 and exactly one stderr line that names the flag or file at
fault, print no traceback, and leave the test's directory exactly as it was: nothing created,
nothing modified, nothing deleted (an existing experiment survives a bad `--overwrite`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from cli_runner import run_cli
from helpers import make_feature_dir

# Starts Ray or trains real models: the full suite (make test), not the fast lane.
pytestmark = pytest.mark.slow

GENRETUNE = str(Path(sys.executable).with_name("genretune"))
TINY_SEARCH = ["--synthetic-scale", "0.02", "--base-channels", "4", "--epochs", "2"]


def _feature_dir(tmp: Path, edit: Callable[[Path], None] | None = None) -> str:
    d = make_feature_dir(tmp / "features")
    if edit is not None:
        edit(d)
    return str(d)


def _save(name: str, value: Callable[[Path], np.ndarray]) -> Callable[[Path], None]:
    return lambda d: np.save(d / name, value(d))


def _labels(d: Path) -> np.ndarray:
    return np.load(d / "labels_multilabel.npy")


def _features(d: Path) -> np.ndarray:
    return np.load(d / "features.npy")


def _with_nan(d: Path) -> np.ndarray:
    f = _features(d)
    f[7, 3, 2] = np.nan
    return f


def _with_inf(d: Path) -> np.ndarray:
    f = _features(d)
    f[-1, 0, 0] = np.inf
    return f


def _with_huge(d: Path) -> np.ndarray:
    f = _features(d).astype(np.float32)
    f[5, 1, 1] = 3e38
    return f


def _labels_with(value: int) -> Callable[[Path], np.ndarray]:
    def edit(d: Path) -> np.ndarray:
        labels = _labels(d).astype(np.int16)
        labels[4, 1] = value
        return labels

    return edit


def _dominant_genre_only_outside_train(d: Path) -> None:
    """genre0 is the most common genre, but none of its tracks is in the training split."""
    labels = np.zeros_like(_labels(d))
    split = np.load(d / "split.npy")
    labels[split != 0, 0] = 1
    labels[split == 0, 1 + np.arange((split == 0).sum()) % (labels.shape[1] - 1)] = 1
    np.save(d / "labels_multilabel.npy", labels)


def _fma(tmp: Path, edit: Callable[[Path], None] | None, *extra: str) -> list[str]:
    """prepare-fma on a tiny archive in FMA's format, after `edit` of its metadata dir."""
    from fma_fixture import make_fma

    fma = make_fma(tmp / "fma", n_tracks=3, seconds=1.0)
    if edit is not None:
        edit(fma["metadata"])
    out = ["--out", str(tmp / "features")] if "--out" not in extra else []
    return [
        "data",
        "prepare-fma",
        "--metadata",
        str(fma["metadata"]),
        "--audio",
        str(fma["audio"]),
        *out,
        *extra,
    ]


def _model_dir_with_report(tmp: Path) -> Path:
    """A model dir as `genretune train` leaves it: weights, config and a test report."""
    d = tmp / "model"
    d.mkdir()
    for name in ("model.pt", "config.json", "metrics.json", "history.csv"):
        (d / name).write_text("x\n")
    return d


def _break_genre_list(metadata: Path) -> None:
    path = metadata / "tracks.csv"
    text = path.read_text()
    assert "[12]" in text
    path.write_text(text.replace("[12]", "[12 __import__]", 1))


def _duplicate_genre(metadata: Path) -> None:
    path = metadata / "genres.csv"
    lines = path.read_text().splitlines()
    row = next(line for line in lines if line.startswith("12,"))
    path.write_text("\n".join([*lines, row]) + "\n")


def _npz(tmp: Path, **arrays: np.ndarray) -> str:
    path = tmp / "predictions.npz"
    np.savez(path, **arrays)
    return str(path)


_EXPERIMENT: list[Path] = []


def _real_experiment(tmp: Path) -> str:
    """A copy of a real finished experiment (one tiny search per test session)."""
    import shutil
    import tempfile

    if not _EXPERIMENT:
        root = Path(tempfile.mkdtemp(prefix="genretune-bad-input-"))
        argv = [GENRETUNE, "search", *TINY_SEARCH, "--num-samples", "2", "--name", "exp"]
        argv += ["--storage-path", str(root), "--progress-interval", "1000"]
        res = subprocess.run(argv, capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stderr[-2000:]
        _EXPERIMENT.append(root / "exp")
    target = tmp / "runs" / "real"
    shutil.copytree(_EXPERIMENT[0], target)
    return str(target)


def _write(tmp: Path, name: str, text: str) -> str:
    path = tmp / name
    path.write_text(text)
    return str(path)


def _space(tmp: Path, text: str, suffix: str = ".yaml") -> list[str]:
    return ["--space", _write(tmp, f"space{suffix}", text)]


def _search(tmp: Path, *extra: str) -> list[str]:
    return ["search", "--storage-path", str(tmp / "runs"), "--name", "exp", *TINY_SEARCH, *extra]


def _train(tmp: Path, *extra: str) -> list[str]:
    return ["train", "--output-dir", str(tmp / "models"), *TINY_SEARCH, *extra]


def _with_fake_experiment(tmp: Path, argv: list[str]) -> list[str]:
    """argv, after making an existing experiment 'exp' (settings file and a result) that must
    survive the command."""
    exp = tmp / "runs" / "exp"
    exp.mkdir(parents=True)
    (exp / "genretune_search.json").write_text('{"name": "exp"}\n')
    (exp / "result.json").write_text("{}\n")
    return argv


GOOD_SETTINGS = '{"name": "exp", "metric": "best_val_f1", "mode": "max", "space": {}}'


def _damaged_experiment(
    tmp: Path, settings: str = GOOD_SETTINGS, reasons: str = "{}", journal: str | None = None
) -> str:
    """An experiment dir whose genretune files are as given (Ray's state is never reached):
    `reasons` is the older end-reasons map, `journal` the end-reasons journal."""
    d = tmp / "runs" / "damaged"
    d.mkdir(parents=True)
    (d / "genretune_search.json").write_text(settings)
    (d / "trial_end_reasons.json").write_text(reasons)
    if journal is not None:
        (d / "trial_end_reasons.jsonl").write_text(journal)
    (d / "experiment_state-2026-01-01_00-00-00.json").write_text("{}")
    return str(d)


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


def _read_only(path: Path) -> Path:
    """A directory nothing can be written in: permissions for a normal user; for root, whom
    permissions do not stop, a read-only filesystem mounted there (unmounted by the test)."""
    path.mkdir(parents=True)
    if os.geteuid() != 0:
        path.chmod(0o555)
        return path
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(path)],
                         capture_output=True, text=True)  # fmt: skip
    if res.returncode != 0:  # a container without the capability: nothing stops root here
        pytest.skip(f"root cannot mount a read-only filesystem here: {res.stderr.strip()}")
    MOUNTED.append(path)
    return path


MOUNTED: list[Path] = []


def _not_an_experiment(tmp: Path) -> str:
    d = tmp / "runs" / "notes"
    d.mkdir(parents=True)
    (d / "readme.txt").write_text("not an experiment\n")
    return str(d)


Case = tuple[str, Callable[[Path], list[str]], str]

CASES: list[Case] = [
    # -- data files (feature dir) --------------------------------------------------------------
    (
        "missing features file",
        lambda t: _train(t, "--data", _feature_dir(t, lambda d: (d / "features.npy").unlink())),
        "features.npy: file not found",
    ),
    ("missing data dir", lambda t: ["data", "stats", "--data", str(t / "nope")], "nope"),
    (
        "features/labels length mismatch",
        lambda t: _train(
            t, "--data", _feature_dir(t, _save("labels_multilabel.npy", lambda d: _labels(d)[:-5]))
        ),
        "labels_multilabel.npy: has 55 rows but features.npy has 60",
    ),
    (
        "labels not 0/1",
        lambda t: [
            "data",
            "stats",
            "--data",
            _feature_dir(t, _save("labels_multilabel.npy", _labels_with(2))),
        ],
        "labels_multilabel.npy: labels must contain only 0 and 1",
    ),
    (
        "negative labels",
        lambda t: _search(
            t, "--data", _feature_dir(t, _save("labels_multilabel.npy", _labels_with(-1)))
        ),
        "labels_multilabel.npy: labels must contain only 0 and 1",
    ),
    (
        "NaN features",
        lambda t: _train(t, "--data", _feature_dir(t, _save("features.npy", _with_nan))),
        "features.npy: features contain NaN or Inf (first at track 7)",
    ),
    (
        "Inf features in a search",
        lambda t: _search(t, "--data", _feature_dir(t, _save("features.npy", _with_inf))),
        "features.npy: features contain NaN or Inf (first at track 59)",
    ),
    (
        "float64 features",
        lambda t: _train(
            t,
            "--data",
            _feature_dir(t, _save("features.npy", lambda d: _features(d).astype(np.float64))),
        ),
        "features.npy: features must be float16 or float32, got float64",
    ),
    (
        "features of rank 2",
        lambda t: _train(
            t,
            "--data",
            _feature_dir(t, _save("features.npy", lambda d: _features(d).reshape(60, -1))),
        ),
        "features.npy: features must have rank 3",
    ),
    (
        "labels of rank 1",
        lambda t: _train(
            t, "--data", _feature_dir(t, _save("labels_multilabel.npy", lambda d: _labels(d)[:, 0]))
        ),
        "labels_multilabel.npy: labels must have rank 2",
    ),
    (
        "string labels",
        lambda t: _train(
            t,
            "--data",
            _feature_dir(t, _save("labels_multilabel.npy", lambda d: _labels(d).astype(str))),
        ),
        "labels_multilabel.npy: labels must be numeric 0/1",
    ),
    (
        "genres.json length",
        lambda t: _train(
            t,
            "--data",
            _feature_dir(t, lambda d: (d / "genres.json").write_text('["a", "b", "c"]')),
        ),
        "genres.json: lists 3 genres but the labels have 4 columns",
    ),
    (
        "genres.json not JSON",
        lambda t: _train(
            t, "--data", _feature_dir(t, lambda d: (d / "genres.json").write_text("a, b"))
        ),
        "genres.json: not valid JSON",
    ),
    (
        "features.npy not an array",
        lambda t: _train(
            t,
            "--data",
            _feature_dir(t, lambda d: (d / "features.npy").write_bytes(b"\x93NUMPY junk")),
        ),
        "features.npy: not a readable .npy array",
    ),
    (
        "empty dataset",
        lambda t: _train(
            t,
            "--data",
            _feature_dir(
                t,
                lambda d: [
                    np.save(d / "features.npy", _features(d)[:0]),
                    np.save(d / "labels_multilabel.npy", _labels(d)[:0]),
                    (d / "split.npy").unlink(),
                ],
            ),
        ),
        "features.npy: the dataset is empty (0 tracks)",
    ),
    (
        "filter keeps no genre",
        lambda t: _search(t, "--min-samples-per-genre", "100000"),
        "--min-samples-per-genre 100000 keeps no genre",
    ),
    (
        "filter keeps no training track",
        lambda t: _train(
            t, "--data", _feature_dir(t, _dominant_genre_only_outside_train), "--max-genres", "1"
        ),
        "leave no training track with a kept genre",
    ),
    (
        "split with bad values",
        lambda t: _train(
            t, "--data", _feature_dir(t, _save("split.npy", lambda d: np.arange(60) % 4))
        ),
        "split.npy: split values must be 0 (train), 1 (val) or 2 (test)",
    ),
    (
        "split of wrong length",
        lambda t: _search(
            t, "--data", _feature_dir(t, _save("split.npy", lambda d: np.zeros(10, int)))
        ),
        "split.npy: split must have shape (60,)",
    ),
    (
        "split without a validation track",
        lambda t: _train(
            t, "--data", _feature_dir(t, _save("split.npy", lambda d: np.arange(60) % 2 * 2))
        ),
        "split.npy: the val split (1) is empty",
    ),
    # -- FMA preparation ------------------------------------------------------------------------
    (
        "prepare-fma without tracks.csv",
        lambda t: _fma(t, lambda m: (m / "tracks.csv").unlink()),
        "tracks.csv: file not found",
    ),
    (
        "prepare-fma on a tracks.csv that is not FMA's",
        lambda t: _fma(t, lambda m: (m / "tracks.csv").write_text("a,b\n1,2\n")),
        "tracks.csv",
    ),
    (
        "prepare-fma with a genre list that is not a list literal",
        lambda t: _fma(t, _break_genre_list),
        "is not a list of genre ids",
    ),
    (
        "prepare-fma into a directory that is not its output",
        lambda t: _fma(t, None, "--out", _not_an_experiment(t)),
        "exists and is not a prepare-fma output",
    ),
    ("prepare-fma with an unknown subset", lambda t: _fma(t, None, "--subset", "tiny"), "--subset"),
    (
        "prepare-fma with more mels than FFT bins",
        lambda t: _fma(t, None, "--n-fft", "64", "--hop-length", "32", "--n-mels", "40"),
        "--n-mels 40 is above n_fft/2+1 = 33",
    ),
    # -- search space files -------------------------------------------------------------------
    (
        "space low > high",
        lambda t: _search(t, *_space(t, "lr: {type: float, low: 0.01, high: 0.001}")),
        "space.yaml: lr: low (0.01) > high (0.001)",
    ),
    (
        "space unknown parameter",
        lambda t: _search(t, *_space(t, "learning_rate: {type: float, low: 0.001, high: 0.01}")),
        "space.yaml: learning_rate: unknown or unsearchable parameter",
    ),
    (
        "space wrong type of bound",
        lambda t: _search(t, *_space(t, "lr: {type: float, low: small, high: 0.01}")),
        "space.yaml: lr.low must be a finite number",
    ),
    (
        "space unknown distribution type",
        lambda t: _search(t, *_space(t, "base_channels: {type: choice, choices: [4, 8]}")),
        "space.yaml: base_channels: type must be float, int or categorical",
    ),
    (
        "space empty categorical",
        lambda t: _search(t, *_space(t, "base_channels: {type: categorical, choices: []}")),
        "space.yaml: base_channels: choices must be a non-empty list",
    ),
    (
        "space threshold outside [0, 1]",
        lambda t: _search(
            t, "--decision", "space", *_space(t, "threshold: {type: float, low: 0.2, high: 1.5}")
        ),
        "search space: threshold=1.5 is invalid",
    ),
    (
        "space searching the rule while the rule is tuned",
        lambda t: _search(t, *_space(t, "threshold: {type: float, low: 0.3, high: 0.7}")),
        "threshold/top_k are searched only with --decision space",
    ),
    (
        "space top-K above the genre count",
        lambda t: _search(
            t, "--decision", "space", *_space(t, "top_k: {type: categorical, choices: [3, 500]}")
        ),
        "search space: top_k 500 is above the dataset's",
    ),
    (
        "space not YAML",
        lambda t: _search(t, *_space(t, "lr: [1, 2\n")),
        "space.yaml: not valid YAML",
    ),
    (
        "space not JSON",
        lambda t: _search(t, *_space(t, "{'lr': 1}", ".json")),
        "space.json: not valid JSON",
    ),
    ("space a list", lambda t: _search(t, *_space(t, "- lr\n")), "space.yaml: must be a mapping"),
    (
        "space file missing",
        lambda t: _search(t, "--space", str(t / "no.yaml")),
        "no.yaml: file not found",
    ),
    # -- config files -------------------------------------------------------------------------
    (
        "config unknown key",
        lambda t: _train(t, "--config", _write(t, "c.json", '{"learning_rate": 0.1}')),
        "c.json: unknown config key(s): learning_rate",
    ),
    (
        "config wrong type",
        lambda t: _train(t, "--config", _write(t, "c.json", '{"base_channels": "wide"}')),
        "c.json: base_channels must be an integer",
    ),
    (
        "config missing its config section",
        lambda t: _train(t, "--config", _write(t, "c.json", '{"provenance": {"trial_id": "x"}}')),
        "c.json: missing required key 'config'",
    ),
    (
        "config not JSON",
        lambda t: _train(t, "--config", _write(t, "c.json", "lr: 0.1\n")),
        "c.json: not valid JSON",
    ),
    (
        "tuning results missing their best rule",
        lambda t: _train(t, "--load-tuning-results", _write(t, "tuning.json", '{"sweep": []}')),
        "tuning.json",
    ),
    # -- experiments ---------------------------------------------------------------------------
    (
        "results of an unknown experiment",
        lambda t: ["results", "nope", "--storage-path", str(t / "runs")],
        "nope: no experiment of that name",
    ),
    (
        "results of a path that is not an experiment",
        lambda t: ["results", _not_an_experiment(t)],
        "notes: not a genretune experiment",
    ),
    (
        "export of an unknown experiment",
        lambda t: ["export", "nope", "--storage-path", str(t / "runs"), "-o", str(t / "b.json")],
        "nope: no experiment of that name",
    ),
    (
        "resume of an unknown experiment",
        lambda t: ["search", "--resume", "nope", "--storage-path", str(t / "runs")],
        "--resume nope: no experiment",
    ),
    (
        "resume of a path that is not an experiment",
        lambda t: [
            "search",
            "--resume",
            Path(_not_an_experiment(t)).name,
            "--storage-path",
            str(t / "runs"),
        ],
        "--resume notes: ",
    ),
    (
        "existing name without --resume or --overwrite",
        lambda t: _with_fake_experiment(t, _search(t, "--num-samples", "1")),
        "--name exp: experiment",
    ),
    (
        "bad data with --overwrite keeps the old experiment",
        lambda t: _with_fake_experiment(t, _search(t, "--overwrite", "--data", str(t / "missing"))),
        "missing: data directory not found",
    ),
    (
        "name escaping the storage path",
        lambda t: ["search", "--storage-path", str(t / "runs"), "--name", "../up"],
        "--name '../up'",
    ),
    # -- numbers -------------------------------------------------------------------------------
    ("zero epochs", lambda t: _search(t, "--epochs", "0"), "--epochs must be >= 1"),
    (
        "negative batch size",
        lambda t: _search(t, "--batch-size", "-8"),
        "--batch-size must be >= 1",
    ),
    ("zero batch size", lambda t: _train(t, "--batch-size", "0"), "--batch-size must be >= 1"),
    ("negative lr", lambda t: _search(t, "--lr", "-0.001"), "--lr must be > 0"),
    ("zero patience", lambda t: _search(t, "--patience", "0"), "--patience must be >= 1"),
    (
        "zero cpus",
        lambda t: _search(t, "--cpus-per-trial", "0"),
        "--cpus-per-trial must be a number > 0",
    ),
    (
        "negative cpus",
        lambda t: _search(t, "--cpus-per-trial", "-1"),
        "--cpus-per-trial must be a number > 0",
    ),
    ("fractional gpus > 1", lambda t: _search(t, "--gpus-per-trial", "1.5"), "--gpus-per-trial"),
    ("top-K of 0", lambda t: _search(t, "--top-k", "0"), "--top-k must be >= 1"),
    (
        "top-K above the genre count (search)",
        lambda t: _search(t, "--top-k", "71"),
        "--top-k 71 is above the dataset's 70 genres",
    ),
    (
        "top-K above the kept genres (train)",
        lambda t: _train(t, "--top-k", "5", "--data", _feature_dir(t)),
        "--top-k 5 is above the 4 genres kept",
    ),
    (
        "threshold above 1",
        lambda t: _search(t, "--prediction-threshold", "1.01"),
        "--prediction-threshold must be in [0, 1]",
    ),
    (
        "threshold below 0",
        lambda t: _train(t, "--prediction-threshold", "-0.5"),
        "--prediction-threshold must be in [0, 1]",
    ),
    ("zero samples", lambda t: _search(t, "--num-samples", "0"), "--num-samples must be >= 1"),
    ("negative ramp-up", lambda t: _search(t, "--ramp-up", "-2"), "--ramp-up must be >= 0"),
    (
        "a directory as the config file",
        lambda t: ["train", "--config", str(t)],
        ": a directory, not a config file",
    ),
    (
        "a file as the data directory",
        lambda t: _train(t, "--data", _write(t, "features.txt", "x\n")),
        "features.txt: a file, not a data directory",
    ),
    (
        "a device torch knows but training does not",
        lambda t: _train(t, "--device", "mps"),
        "--device mps: not supported",
    ),  # fmt: skip
    (
        "prepare-fma on a cluster nobody answers",
        lambda t: _fma(t, None, "--address", "127.0.0.1:1"),
        "--address 127.0.0.1:1: no Ray cluster answers there",
    ),
    ("grace period 0", lambda t: _search(t, "--grace-period", "0"), "--grace-period must be in"),
    ("reduction factor 0", lambda t: _search(t, "--reduction-factor", "0"), "--reduction-factor"),
    (
        "grace period above epochs",
        lambda t: _search(t, "--grace-period", "5"),
        "--grace-period must be in [1, epochs=2]",
    ),
    (
        "no TPE start-up trial",
        lambda t: _search(t, "--tpe-startup", "0"),
        "--tpe-startup must be >= 1",
    ),
    ("non-number flag", lambda t: _search(t, "--lr", "fast"), "--lr: invalid float value"),
    (
        "unreachable MLflow store",
        lambda t: _search(t, "--mlflow-uri", "http://127.0.0.1:9/"),
        "--mlflow-uri http://127.0.0.1:9/",
    ),
    (
        "tune-threshold on missing predictions",
        lambda t: ["tune-threshold", "--predictions", str(t / "p.npz")],
        "p.npz",
    ),
    # -- names that would place files outside where they belong -------------------------------
    (
        "train name escaping the output dir",
        lambda t: _train(t, "--experiment-name", "../../escape"),
        "--experiment-name '../../escape'",
    ),
    (
        "train name with a separator",
        lambda t: _train(t, "--experiment-name", "a/b"),
        "--experiment-name 'a/b'",
    ),
    ("search name of 300 characters", lambda t: _search(t, "--name", "x" * 300), "--name 'xxx"),
    ("resume name escaping", lambda t: ["search", "--resume", "../x"], "--resume '../x'"),
    # -- the search's baseline and strategy options ----------------------------------------------
    (
        "baseline file missing",
        lambda t: _search(t, "--baseline", str(t / "nope.yaml")),
        "--baseline",
    ),
    (
        "baseline file with an unknown key",
        lambda t: _search(t, "--baseline", _write(t, "b.yaml", "learning_rate: 0.1\n")),
        "unknown parameter(s) learning_rate",
    ),
    (
        "baseline value of the wrong type",
        lambda t: _search(t, "--baseline", _write(t, "b.json", '{"lr": "x"}')),
        "b.json: lr must be a number, got 'x'",
    ),
    (
        "baseline value null",
        lambda t: _search(t, "--baseline", _write(t, "b.json", '{"base_channels": null}')),
        "b.json: base_channels",
    ),
    (
        "baseline integer given as a string",
        lambda t: _search(t, "--baseline", _write(t, "b.yaml", 'base_channels: "16"\n')),
        "b.yaml: base_channels must be an integer",
    ),
    (
        "resume with flags that would change the experiment",
        lambda t: _with_fake_experiment(
            t,
            [
                "search",
                "--resume",
                "exp",
                "--storage-path",
                str(t / "runs"),
                "--num-samples",
                "40",
                "--lr",
                "0.01",
            ],  # fmt: skip
        ),
        "--num-samples, --lr cannot be changed",
    ),
    (
        "baseline draws without a baseline",
        lambda t: _search(t, "--no-baseline", "--baseline-draws", "3"),
        "--no-baseline cannot be combined",
    ),
    ("negative baseline draws", lambda t: _search(t, "--baseline-draws", "-1"), "--baseline-draws"),
    ("baseline spread of 0", lambda t: _search(t, "--baseline-spread", "0"), "--baseline-spread"),
    ("tpe start-up not a number", lambda t: _search(t, "--tpe-startup", "many"), "--tpe-startup"),
    ("cut trials as what", lambda t: _search(t, "--cut-trials-as", "failed"), "--cut-trials-as"),
    (
        "late cut without ASHA",
        lambda t: _search(t, "--late-cut", "--scheduler", "fifo"),
        "--late-cut: only with ASHA",
    ),
    # -- prepare-fma values out of their domain ------------------------------------------------
    ("a million workers", lambda t: _fma(t, None, "--workers", "1000000"), "--workers 1000000"),
    ("zero workers", lambda t: _fma(t, None, "--workers", "0"), "--workers 0"),
    ("frames of 10^12", lambda t: _fma(t, None, "--frames", "1000000000000"), "--frames"),
    ("n-fft of 10^12", lambda t: _fma(t, None, "--n-fft", "1000000000000"), "--n-fft"),
    (
        "sample rate of 10^12",
        lambda t: _fma(t, None, "--sample-rate", "10" + "0" * 12),
        "--sample-rate",
    ),
    ("min seconds nan", lambda t: _fma(t, None, "--min-seconds", "nan"), "--min-seconds"),
    ("min seconds inf", lambda t: _fma(t, None, "--min-seconds", "inf"), "--min-seconds"),
    (
        "a million mels and frames",
        lambda t: _fma(t, None, "--n-fft", "65536", "--n-mels", "1000000", "--frames", "1000000"),
        "--n-mels",
    ),
    (
        "duplicated genre_id",
        lambda t: _fma(t, _duplicate_genre),
        "genre_id 12 appears more than once",
    ),
    # -- the cluster cannot run a trial: refused within seconds, before anything is written ------
    (
        "GPUs with a CPU build of torch or on a machine without one",
        lambda t: _search(t, "--gpus-per-trial", "0.5"),
        "--gpus-per-trial 0.5: ",
    ),
    (
        "more CPUs per trial than any node has",
        lambda t: _search(t, "--cpus-per-trial", "10000"),
        "--cpus-per-trial 10000: the nodes have at most",
    ),
    (
        "a cluster address nobody answers",
        lambda t: _search(t, "--address", "127.0.0.1:1"),
        "--address 127.0.0.1:1: no Ray cluster answers there",
    ),
    ("a cluster address without a port", lambda t: _search(t, "--address", "nohost"), "HOST:PORT"),
    (
        "an Optuna storage whose driver is missing",
        lambda t: _search(t, "--optuna-storage", "postgresql+nosuchdriver://u@localhost/db"),
        "--optuna-storage postgresql+nosuchdriver://u@localhost/db: cannot open it",
    ),
    # -- output targets -------------------------------------------------------------------------
    (
        "export -o naming a directory",
        lambda t: ["export", _damaged_experiment(t), "-o", str(_mkdir(t / "outdir"))],
        "-o ",
    ),
    (
        "export -o in a missing directory",
        lambda t: ["export", _damaged_experiment(t), "-o", str(t / "no" / "such" / "b.json")],
        "does not exist",
    ),
    (
        "export -o in a read-only directory",
        lambda t: ["export", _damaged_experiment(t), "-o", str(_read_only(t / "ro") / "b.json")],
        "permission denied",
    ),
    (
        "results --plots naming a file",
        lambda t: ["results", _damaged_experiment(t), "--plots", _write(t, "plots", "x")],
        "--plots",
    ),
    (
        "results --output naming a directory",
        lambda t: ["results", _damaged_experiment(t), "--output", str(_mkdir(t / "o"))],
        "is a directory",
    ),
    (
        "export --with-checkpoint naming a file",
        lambda t: [
            "export",
            _damaged_experiment(t),
            "-o",
            str(t / "b.json"),
            "--with-checkpoint",
            _write(t, "ckpt", "x"),
            "--force",
        ],
        "--with-checkpoint",
    ),
    (
        "train --output-dir naming a file",
        lambda t: ["train", "--output-dir", _write(t, "models", "x"), *TINY_SEARCH],
        "--output-dir",
    ),
    (
        "train --output-dir under a read-only directory",
        lambda t: ["train", "--output-dir", str(_read_only(t / "ro") / "m"), *TINY_SEARCH],
        "permission denied",
    ),
    # -- damaged experiment directories ----------------------------------------------------------
    (
        "results of a truncated settings file",
        lambda t: ["results", _damaged_experiment(t, settings='{"name": "exp", "metr')],
        "genretune_search.json: not valid JSON",
    ),
    (
        "export of a garbage end-reasons file",
        lambda t: [
            "export",
            _damaged_experiment(t, reasons="\x00garbage"),
            "-o",
            str(t / "b.json"),
        ],
        "trial_end_reasons.json: not valid JSON",
    ),
    (
        "results of a garbage end-reasons journal",
        lambda t: ["results", _damaged_experiment(t, journal="\x00garbage\n")],
        "trial_end_reasons.jsonl: not JSON lines of trial end reasons",
    ),
    (
        "resume of a truncated settings file",
        lambda t: [
            "search",
            "--resume",
            Path(_damaged_experiment(t, settings='{"na')).name,
            "--storage-path",
            str(t / "runs"),
        ],
        "genretune_search.json: not valid JSON",
    ),
    (
        "a feature of 3e38 (finite)",
        lambda t: _train(t, "--data", _feature_dir(t, _save("features.npy", _with_huge))),
        "features.npy: features reach 3e+38 (track 5)",
    ),
    # -- values out of their domain --------------------------------------------------------------
    ("seed -1", lambda t: _train(t, "--seed", "-1"), "--seed must be in [0, 4294967295]"),
    ("seed 10^21", lambda t: _search(t, "--seed", "1" + "0" * 21), "--seed must be in"),
    ("data seed -1", lambda t: _train(t, "--data-seed", "-1"), "--data-seed must be in"),
    (
        "epochs 1e400 in a config file",
        lambda t: ["train", "--config", _write(t, "c.json", '{"epochs": 1e400}')],
        "epochs must be an integer, got inf",
    ),
    (
        "a batch of 10^9",
        lambda t: _train(t, "--batch-size", "1000000000"),
        "--batch-size must be <= 65536",
    ),
    # -- search settings that could only fail inside Ray -----------------------------------------
    (
        "a metric no trial reports",
        lambda t: _search(t, "--metric", "val_f2"),
        "--metric val_f2: trials do not report it",
    ),
    (
        "base channels as a float distribution",
        lambda t: _search(t, *_space(t, "base_channels: {type: float, low: 4, high: 8}\n")),
        "base_channels takes integers",
    ),
    (
        "base channels choices that are not integers",
        lambda t: _search(t, *_space(t, "base_channels: {type: categorical, choices: [4, 6.5]}\n")),
        "base_channels takes integers, got choice 6.5",
    ),
    (
        "a step that does not divide its range",
        lambda t: _search(
            t, *_space(t, "threshold: {type: float, low: 0.3, high: 0.8, step: 0.15}\n")
        ),
        "step 0.15 does not divide the range 0.3..0.8",
    ),
    (
        "two GPUs per trial",
        lambda t: _search(t, "--gpus-per-trial", "2"),
        "--gpus-per-trial 2: must be in [0, 1]",
    ),
    (
        "CPUs per trial nan",
        lambda t: _search(t, "--cpus-per-trial", "nan"),
        "--cpus-per-trial must be",
    ),
    (
        "progress interval -1",
        lambda t: _search(t, "--progress-interval", "-1"),
        "--progress-interval",
    ),
    (
        "a synthetic dataset larger than the machine",
        lambda t: _train(t, "--synthetic-scale", "10", "--n-mels", "4096", "--frames", "65536"),
        "the dataset would take",
    ),
    # -- train and tune-threshold values (formerly in test_cli) -------------------------------
    ("epochs 0", lambda t: ["train", "--epochs", "0"], "--epochs must be >= 1"),
    ("batch size -4", lambda t: ["train", "--batch-size", "-4"], "--batch-size must be >= 1"),
    ("lr 0", lambda t: ["train", "--lr", "0"], "--lr must be > 0"),
    ("patience 0", lambda t: ["train", "--patience", "0"], "--patience must be >= 1"),
    (
        "threshold 1.5",
        lambda t: ["train", "--prediction-threshold", "1.5"],
        "--prediction-threshold must be in [0, 1]",
    ),
    ("top-k 0", lambda t: ["train", "--top-k", "0"], "--top-k must be >= 1"),
    ("epochs not a number", lambda t: ["train", "--epochs", "two"], "--epochs: invalid int value"),
    (
        "a filter that keeps no genre",
        lambda t: ["train", "--min-samples-per-genre", "100000"],
        "--min-samples-per-genre 100000 keeps no genre",
    ),
    (
        "missing config file",
        lambda t: ["train", "--config", str(t / "best.json")],
        "best.json: config file not found",
    ),
    ("threads 0", lambda t: ["train", "--threads", "0"], "--threads must be >= 1"),
    ("an unknown device", lambda t: ["train", "--device", "tpu9"], "--device tpu9"),
    (
        "missing predictions file",
        lambda t: ["tune-threshold", "--predictions", str(t / "p.npz")],
        "predictions file not found",
    ),
    ("missing model dir", lambda t: ["tune-threshold", "--model-dir", str(t / "m")], "--model-dir"),
    ("max genres 0", lambda t: ["data", "stats", "--max-genres", "0"], "--max-genres must be >= 1"),
    (
        "config file cut",
        lambda t: ["train", "--config", _write(t, "c.json", "{")],
        "not valid JSON",
    ),
    (
        "config file with an unknown key",
        lambda t: ["train", "--config", _write(t, "c.json", '{"lr": 0.1, "learning_rate": 2}')],
        "unknown config key(s): learning_rate",
    ),
    (
        "config file epochs as text",
        lambda t: ["train", "--config", _write(t, "c.json", '{"epochs": "ten"}')],
        "epochs must be an integer",
    ),
    (
        "config file with an unknown top-level key",
        lambda t: ["train", "--config", _write(t, "c.json", '{"config": {}, "extra": 1}')],
        "unknown top-level key(s): extra",
    ),
    (
        "config file a list",
        lambda t: ["train", "--config", _write(t, "c.json", "[1, 2]")],
        "must be a JSON object",
    ),
    (
        "predictions that are not probabilities",
        lambda t: [
            "tune-threshold",
            "--predictions",
            _npz(t, y_true=np.zeros((3, 2)), y_score=np.full((3, 2), 1.5)),
        ],
        "y_score must be probabilities in [0, 1]",
    ),
    (
        "predictions without scores",
        lambda t: ["tune-threshold", "--predictions", _npz(t, y_true=np.zeros((3, 2)))],
        "missing array(s) y_score",
    ),
    # -- results and export of a real experiment (formerly in test_results) ---------------------
    (
        "results of an unknown trial",
        lambda t: ["results", _real_experiment(t), "--trial", "deadbeef"],
        "--trial deadbeef: no such trial",
    ),
    (
        "results sorted by an unknown column",
        lambda t: ["results", _real_experiment(t), "--sort", "nope"],
        "--sort nope: no such column",
    ),
    (
        "results of a trial with a table's options",
        lambda t: ["results", _real_experiment(t), "--trial", "deadbeef", "--sort", "lr"],
        "--trial shows one trial's curve: --sort do not apply",
    ),
    (
        "results with no column named",
        lambda t: ["results", _real_experiment(t), "--columns", ","],
        "--columns ',': no column named",
    ),
    (
        "results --format contradicting the --output extension",
        lambda t: [
            "results",
            _real_experiment(t),
            "--format",
            "csv",
            "--output",
            str(t / "r.json"),
        ],  # fmt: skip
        "r.json: a json file, but --format csv",
    ),
    (
        "results sorted by an empty column name",
        lambda t: ["results", _real_experiment(t), "--sort", ""],
        "--sort : no such column",
    ),
    (
        "export --with-checkpoint --force into a model dir with a test report",
        lambda t: [
            "export",
            _real_experiment(t),
            "-o",
            str(t / "b.json"),
            "--force",
            "--with-checkpoint",
            str(_model_dir_with_report(t)),
        ],  # fmt: skip
        "holds files an export would not replace (history.csv, metrics.json)",
    ),
    (
        "results with a broken filter",
        lambda t: ["results", _real_experiment(t), "--filter", "lr >"],
        "--filter",
    ),
    (
        "results filtered on a setting the search did not vary",
        lambda t: ["results", _real_experiment(t), "--filter", "base_channels == 16"],
        "no column 'base_channels'",
    ),
    (
        "export by an unreported metric",
        lambda t: ["export", _real_experiment(t), "--metric", "val_nope", "-o", str(t / "x.json")],
        "--metric val_nope",
    ),
    (
        "export of an unknown trial",
        lambda t: ["export", _real_experiment(t), "--trial", "deadbeef", "-o", str(t / "x.json")],
        "no such trial",
    ),
    # -- several objectives ------------------------------------------------------------------------
    (
        "one objective only",
        lambda t: _search(t, "--objectives", "val_f1"),
        "give two or three objectives",
    ),
    (
        "an unreported objective",
        lambda t: _search(t, "--objectives", "val_f1,val_nope"),
        "val_nope is not a reported metric",
    ),
    (
        "an objective mode other than max or min",
        lambda t: _search(t, "--objectives", "val_f1:up,val_coverage"),
        "mode of val_f1 must be max or min",
    ),
    (
        "a first objective that cannot pick the best epoch",
        lambda t: _search(t, "--objectives", "val_coverage,val_f1"),
        "the first objective picks each trial's best epoch",
    ),
    (
        "objectives with --metric",
        lambda t: _search(t, "--objectives", "val_f1,val_coverage", "--metric", "best_val_f1"),
        "--objectives and --metric cannot be combined",
    ),
    (
        "a Pareto front of a single-objective search",
        lambda t: ["results", _real_experiment(t), "--pareto"],
        "is a single-objective search",
    ),
    (
        "--where without --pareto",
        lambda t: ["export", _real_experiment(t), "--where", "val_f1 > 0", "-o", str(t / "b.json")],
        "--where needs --pareto",
    ),
    (
        "objectives with --mode",
        lambda t: _search(t, "--objectives", "val_f1,val_coverage", "--mode", "min"),
        "drop --mode",
    ),
    (
        "objectives with --objective",
        lambda t: _search(t, "--objectives", "val_f1,val_coverage", "--objective", "val_f1_macro"),
        "drop --objective",
    ),
    (
        "objectives with trials cut as pruned",
        lambda t: _search(t, "--objectives", "val_f1,val_coverage", "--cut-trials-as", "pruned"),
        "--cut-trials-as pruned needs one objective",
    ),
    (
        "empty objectives",
        lambda t: _search(t, "--objectives", ""),
        "(empty) is not a reported metric",
    ),
    (
        "an objective mode in capitals",
        lambda t: _search(t, "--objectives", "val_f1:MAX,val_coverage"),
        "must be max or min, got 'MAX'",
    ),
    (
        "export --pareto with --mode",
        lambda t: ["export", _real_experiment(t), "--pareto", "--mode", "min"],
        "drop --trial/--metric/--mode",
    ),
    (
        "an empty --where",
        lambda t: ["export", _real_experiment(t), "--pareto", "--where", " "],
        "--where: empty",
    ),
    (
        "results --trial with --pareto",
        lambda t: ["results", _real_experiment(t), "--trial", "x", "--pareto"],
        "--pareto do not apply",
    ),
    (
        "a Pareto front without its study",
        lambda t: ["results", _two_objective_copy(t, "missing"), "--pareto"],
        "optuna.db: no such file",
    ),
    (
        "a Pareto front from an empty study file (Optuna would fill it)",
        lambda t: ["results", _two_objective_copy(t, "empty"), "--pareto"],
        "optuna.db: not an SQLite database",
    ),
    (
        "plots of two objectives from a damaged study, before any plot",
        lambda t: ["results", _two_objective_copy(t, "garbage"), "--plots", str(t / "plots")],
        "optuna.db: not an SQLite database",
    ),
    (
        "a damaged objectives entry in the settings",
        lambda t: ["results", _two_objective_copy(t, "intact", [["val_f1"]]), "--pareto"],
        "'objectives' must be a list of [metric, max|min] pairs",
    ),
    (
        "a study with one value per trial for two objectives",
        lambda t: ["results", _two_objective_copy(t, "intact"), "--pareto"],
        "values per trial",
    ),
]


def _held_by_this_process(tmp: Path) -> str:
    """A real experiment whose writer lock is held by a live process (the test's own)."""
    import socket

    exp = Path(_real_experiment(tmp))
    start = Path(f"/proc/{os.getpid()}/stat").read_text().rsplit(")", 1)[1].split()[19]
    holder = {"host": socket.gethostname(), "pid": os.getpid(), "started": start, "since": "now"}
    exp.with_name(exp.name + ".lock").write_text(json.dumps(holder))
    return str(exp)


def _edited_settings(tmp: Path, **changes) -> str:
    """A real experiment whose settings file has these keys changed (None: removed)."""
    exp = Path(_real_experiment(tmp))
    file = exp / "genretune_search.json"
    settings = json.loads(file.read_text())
    for key, value in changes.items():
        settings[key] = value
    file.write_text(json.dumps(settings))
    return str(exp)


def _search_named(tmp: Path, name: str, *extra: str) -> list[str]:
    return ["search", "--storage-path", str(tmp / "runs"), "--name", name, *TINY_SEARCH, *extra]


def _resume(exp: str) -> list[str]:
    return ["search", "--resume", Path(exp).name, "--storage-path", str(Path(exp).parent)]


EXPERIMENT_DIR_CASES: list[Case] = [
    (
        "a name with a trailing newline",
        lambda t: _search_named(t, "exp\n"),
        "--name 'exp\\n'",
    ),
    (
        "--resume of an experiment another search is writing",
        lambda t: _resume(_held_by_this_process(t)),
        "in use by another genretune search",
    ),
    (
        "--overwrite of an experiment another search is writing",
        lambda t: _search_named(t, Path(_held_by_this_process(t)).name, "--overwrite"),
        "in use by another genretune search",
    ),
    (
        "--resume with a settings value of the wrong type",
        lambda t: _resume(_edited_settings(t, num_samples="four")),
        "genretune_search.json: 'num_samples' is 'four'",
    ),
    (
        "results of settings from a newer genretune",
        lambda t: ["results", _edited_settings(t, schema_version=99)],
        "written by a newer genretune",
    ),
    (
        "export with a mode that is neither max nor min in the settings",
        lambda t: ["export", _edited_settings(t, mode="sideways"), "-o", str(t / "b.json")],
        "'mode' is 'sideways'",
    ),
    (
        "--resume with a garbage tuner.pkl",
        lambda t: _resume(_garbage(Path(_real_experiment(t)) / "tuner.pkl")),
        "tuner.pkl: damaged",
    ),
    (
        "--resume with its optuna.db deleted",
        lambda t: _resume(_deleted(Path(_real_experiment(t)) / "optuna.db", unfinish=True)),
        "optuna.db: missing",
    ),
    (
        "dashboard of an experiment whose optuna.db is gone",
        lambda t: ["dashboard", _deleted(Path(_real_experiment(t)) / "optuna.db")],
        "has no Optuna study (optuna.db is missing)",
    ),
    (
        "dashboard of a directory that is not an experiment",
        lambda t: ["dashboard", str(t)],
        "not a genretune experiment directory",
    ),
    (
        "dashboard on a port that is not a port",
        lambda t: ["dashboard", _real_experiment(t), "--port", "70000"],
        "--port 70000: not a port number",
    ),
    (
        "dashboard on a host that is not an address",
        lambda t: ["dashboard", _real_experiment(t), "--host", "no.such.host.invalid"],
        "--host no.such.host.invalid: not an address here",
    ),
    (
        "dashboard of an optuna.db that holds another study",
        lambda t: ["dashboard", _edited_settings(t, study_name="elsewhere")],
        "holds no study named 'elsewhere'",
    ),
]


def _garbage(file: Path) -> str:
    file.write_bytes(b"garbage" * 10)
    _unfinish(file.parent)
    return str(file.parent)


def _deleted(file: Path, unfinish: bool = False) -> str:
    file.unlink()
    if unfinish:
        _unfinish(file.parent)
    return str(file.parent)


def _unfinish(exp: Path) -> None:
    """A finished experiment made to look interrupted (so --resume has work to check)."""
    (exp / "search_finished.json").unlink(missing_ok=True)
    settings = json.loads((exp / "genretune_search.json").read_text())
    settings["num_samples"] = settings["num_samples"] + 1
    (exp / "genretune_search.json").write_text(json.dumps(settings))


CASES += EXPERIMENT_DIR_CASES


_MODEL: list[Path] = []


def _model_dir(tmp: Path, edit: Callable[[Path], None] | None = None) -> str:
    """A copy of a model dir trained on a 16x16 feature dir (one tiny run per test session),
    changed by `edit`."""
    import shutil
    import tempfile

    if not _MODEL:
        root = Path(tempfile.mkdtemp(prefix="genretune-bad-input-model-"))
        data = make_feature_dir(root / "features")
        argv = [GENRETUNE, "train", "--data", str(data), "--epochs", "1", "--base-channels", "4"]
        argv += ["--output-dir", str(root / "models"), "--no-progress", "--device", "cpu"]
        res = subprocess.run(argv, capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stderr[-2000:]
        _MODEL.append(next((root / "models").iterdir()))
    target = tmp / "model"
    shutil.copytree(_MODEL[0], target)
    if edit is not None:
        edit(target)
    return str(target)


def _edit_card(**changes) -> Callable[[Path], None]:
    def edit(model: Path) -> None:
        card = json.loads((model / "config.json").read_text())
        for key, value in changes.items():
            if value is None:
                card.pop(key, None)
            else:
                card[key] = value
        (model / "config.json").write_text(json.dumps(card))

    return edit


def _cut(path: Path) -> str:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    return str(path)


def _wider_network(model: Path) -> None:
    card = json.loads((model / "config.json").read_text())
    card["config"]["base_channels"] *= 2
    (model / "config.json").write_text(json.dumps(card))


def _predict(tmp: Path, features: np.ndarray | None = None, *extra: str, model=None) -> list[str]:
    argv = ["predict", "--model-dir", model or _model_dir(tmp), "-o", str(tmp / "out.csv")]
    if features is not None:
        np.save(tmp / "x.npy", features)
        argv += ["--features", str(tmp / "x.npy")]
    return argv + list(extra)


_GOOD = np.zeros((3, 16, 16), dtype=np.float32)
_NAN = _GOOD.copy()
_NAN[2, 3, 4] = np.nan

PREDICT_CASES: list[Case] = [
    ("predict: features of the wrong shape", lambda t: _predict(t, _GOOD[:, :8]),
     "shape (3, 8, 16); this model takes (N, 16, 16)"),
    ("predict: integer features", lambda t: _predict(t, _GOOD.astype(np.int64)),
     "dtype int64; features must be float16, float32 or float64"),
    ("predict: a NaN in the features", lambda t: _predict(t, _NAN), "NaN or inf in track 2"),
    ("predict: no tracks", lambda t: _predict(t, _GOOD[:0]), "no tracks (0 rows)"),
    ("predict: features that are not an .npy file",
     lambda t: [*_predict(t, None), "--features", _write(t, "x.npy", "not numpy")],
     "not a readable .npy array"),
    ("predict: a features file cut short",
     lambda t: [*_predict(t, _GOOD), "--features", _cut(t / "x.npy")], "x.npy: cut short"),
    ("predict: a model dir that does not exist",
     lambda t: _predict(t, _GOOD, model=str(t / "nowhere")), "directory not found"),
    ("predict: a directory that is not a model dir",
     lambda t: _predict(t, _GOOD, model=str(t)), "not a model dir (config.json is missing)"),
    ("predict: a model dir without its weights",
     lambda t: _predict(t, _GOOD, model=_model_dir(t, lambda m: (m / "model.pt").unlink())),
     "incomplete (model.pt is missing)"),
    ("predict: a model dir of a newer format",
     lambda t: _predict(t, _GOOD, model=_model_dir(t, _edit_card(format_version=99))),
     "model dir format 99; this genretune reads format 2 (upgrade genretune)"),
    ("predict: a model dir from before model dirs were versioned",
     lambda t: _predict(t, _GOOD, model=_model_dir(t, _edit_card(format=None))),
     "before model dirs were versioned"),
    ("predict: weights that do not match the config",
     lambda t: _predict(t, _GOOD, model=_model_dir(t, _wider_network)),
     "the weights do not match"),
    ("predict: audio for a model not trained on audio",
     lambda t: [*_predict(t, None), "--audio", _write(t, "a.wav", "x")], "has no audio settings"),
    ("predict: an output name of no known format", lambda t: [*_predict(t, _GOOD)[:-2],
     "-o", str(t / "out.txt"), "--features", str(t / "x.npy")], "must end in .csv, .json"),
    ("predict: an existing output without --force",
     lambda t: [*_predict(t, _GOOD), "-o", _write(t, "old.csv", "keep me")], "already exists"),
    ("predict: --top-k above the genres it predicts", lambda t: _predict(t, _GOOD, "--top-k", "9"),
     "--top-k 9: must be in [1, 4]"),
    ("predict: --threshold above 1", lambda t: _predict(t, _GOOD, "--threshold", "1.5"),
     "--threshold 1.5: must be in [0, 1]"),
]  # fmt: skip
CASES += PREDICT_CASES


def _two_objective_copy(tmp: Path, study: str, objectives=None) -> str:
    """A copy of the real experiment whose settings say two objectives, its study file
    `study`: missing, empty, garbage or intact (the single-objective study)."""
    exp = Path(_real_experiment(tmp))
    settings_file = exp / "genretune_search.json"
    settings = json.loads(settings_file.read_text())
    settings["objectives"] = objectives or [["val_f1", "max"], ["val_coverage", "max"]]
    settings["optuna_storage"] = f"sqlite:///{exp / 'optuna.db'}"
    settings_file.write_text(json.dumps(settings))
    db = exp / "optuna.db"
    if study == "missing":
        db.unlink()
    elif study == "empty":
        db.write_bytes(b"")
    elif study == "garbage":
        db.write_bytes(b"not a database at all" * 100)
    return str(exp)


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
    }


@pytest.mark.parametrize("build, fragment", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input(tmp_path, build, fragment):
    """Each command in a process of its own, forked from one that imported the CLI once."""
    work = tmp_path / "work"
    work.mkdir()
    try:
        _check_bad_input(work, build, fragment)
    finally:
        while MOUNTED:
            subprocess.run(["umount", str(MOUNTED.pop())], check=False)


# At least one case of each kind through the installed `genretune` script itself: argparse,
# flag values out of domain, dangerous values, names escaping their directory, data files,
# metadata, config and space files, output targets, damaged experiment directories, settings
# that could only fail inside Ray, an unreachable cluster, and an existing experiment.
THROUGH_THE_INSTALLED_SCRIPT = [
    "epochs not a number",
    "a batch of 10^9",
    "a million workers",
    "train name escaping the output dir",
    "NaN features",
    "a feature of 3e38 (finite)",
    "duplicated genre_id",
    "config unknown key",
    "space unknown parameter",
    "export -o naming a directory",
    "results of a truncated settings file",
    "a metric no trial reports",
    "a cluster address nobody answers",
    "GPUs with a CPU build of torch or on a machine without one",
    "bad data with --overwrite keeps the old experiment",
    "one objective only",
    "--resume of an experiment another search is writing",
]


@pytest.mark.parametrize("name", THROUGH_THE_INSTALLED_SCRIPT)
def test_bad_input_through_the_installed_script(tmp_path, name):
    """The same checks through the `genretune` console script itself."""
    build, fragment = next(c[1:] for c in CASES if c[0] == name)
    work = tmp_path / "work"
    work.mkdir()
    _check_bad_input(work, build, fragment, installed=True)


def _check_bad_input(work: Path, build, fragment: str, installed: bool = False) -> None:
    argv = build(work)
    before = _snapshot(work)
    if installed:
        res = subprocess.run([GENRETUNE, *argv], capture_output=True, text=True, timeout=300,
                             cwd=work)  # fmt: skip
    else:
        res = run_cli(argv, cwd=work, scratch=work.parent)
    assert res.returncode == 2, f"exit {res.returncode}\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}"
    assert "Traceback" not in res.stderr, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("genretune") and "error:" in lines[0], lines[0]
    assert fragment in lines[0], lines[0]
    assert _snapshot(work) == before, "the command created, changed or removed files"
