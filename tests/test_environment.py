"""Environment and platform faults through the real `genretune` script: directories named by
HOME, TMPDIR and GENRETUNE_CACHE_DIR that cannot be used, a TMPDIR too long for Ray's Unix
sockets, a C locale with non-ASCII genre names and paths, a working directory that was deleted,
standard output on a full disk, and an MP3 decoder's own notes. Each is one line naming the
variable (exit 2, nothing written), or the command works."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import make_feature_dir

GENRETUNE = str(Path(sys.executable).with_name("genretune"))
TINY_SEARCH = [
    "search",
    "--synthetic-scale",
    "0.02",
    "--base-channels",
    "4",
    "--epochs",
    "1",
    "--num-samples",
    "1",
    "--progress-interval",
    "1000",
]
GENRES = ["Électronique", "Хип-хоп", "Jazz", "Rock"]
# Ray's limit on a Unix socket's path (sun_path of 108 bytes with its NUL, on Linux).
SOCKET_PATH_MAX = 107 if sys.platform != "darwin" else 103


def _env(**changes: str | None) -> dict[str, str]:
    """This process's environment (with the session's GENRETUNE_CACHE_DIR) and `changes`
    (None removes a variable)."""
    env = dict(os.environ)
    for name in ("RAY_ADDRESS", "RAY_TMPDIR"):
        env.pop(name, None)
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def _deleted_cwd(path: Path):
    """A preexec_fn: the command starts in `path`, which is then removed (`mkdir d; cd d;
    rmdir ../d`)."""

    def enter_and_delete() -> None:
        os.chdir(path)
        os.rmdir(path)

    path.mkdir()
    return enter_and_delete


def run(argv: list[str], env: dict | None = None, timeout: float = 300, **kwargs):
    return subprocess.run(
        [GENRETUNE, *argv],
        capture_output=True,
        encoding="utf-8",
        errors="replace",
        env=_env() if env is None else env,
        timeout=timeout,
        **kwargs,
    )


def assert_one_line(res: subprocess.CompletedProcess, *words: str) -> str:
    """Exit 2, exactly one stderr line `genretune: error: ...` holding `words`."""
    lines = res.stderr.splitlines()
    assert res.returncode == 2, res.stderr
    assert len(lines) == 1 and lines[0].startswith("genretune: error: "), res.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else []


def _c_locale(**changes: str | None) -> dict[str, str]:
    return _env(**{"LC_ALL": "C", "LANG": "C", "LC_CTYPE": None, "PYTHONUTF8": None, **changes})


@pytest.fixture
def unicode_features(tmp_path: Path) -> Path:
    """A feature dir under a non-ASCII path whose genres have non-ASCII names."""
    return _unicode_feature_dir(tmp_path / "données" / "features")


def _unicode_feature_dir(directory: Path) -> Path:
    """make_feature_dir's, its most common genre named "Хип-хоп" and its rarest "Électronique"
    (the two a dataset report names)."""
    make_feature_dir(directory, n=120)
    counts = np.load(directory / "labels_multilabel.npy").sum(0)
    names = [""] * len(counts)
    names[int(np.argmax(counts))], names[int(np.argmin(counts))] = GENRES[1], GENRES[0]
    rest = iter(GENRES[2:])
    names = [name or next(rest) for name in names]
    (directory / "genres.json").write_text(json.dumps(names, ensure_ascii=False), "utf-8")
    return directory


# HOME, TMPDIR, GENRETUNE_CACHE_DIR ------------------------------------------------------------


def test_home_a_file_is_one_line_where_the_dataset_cache_would_go(tmp_path):
    home = tmp_path / "home"
    home.write_text("not a directory\n")
    env = _env(HOME=str(home), GENRETUNE_CACHE_DIR=None)
    res = run(["data", "stats", "--synthetic-scale", "0.02"], env=env, cwd=tmp_path)
    assert_one_line(res, "HOME", str(home), "not a directory", "GENRETUNE_CACHE_DIR")
    assert res.stdout == ""
    assert home.read_text() == "not a directory\n"
    assert tree(tmp_path) == ["home"]


def test_cache_dir_a_file_is_one_line_naming_it(tmp_path):
    cache = tmp_path / "cache"
    cache.write_text("")
    env = _env(GENRETUNE_CACHE_DIR=str(cache))
    res = run(["data", "stats", "--synthetic-scale", "0.02"], env=env, cwd=tmp_path)
    assert_one_line(res, "GENRETUNE_CACHE_DIR", str(cache), "not a directory")
    # A directory below a file: the line says which part is not a directory.
    env = _env(GENRETUNE_CACHE_DIR=str(cache / "sub"))
    res = run(["data", "stats", "--synthetic-scale", "0.02"], env=env, cwd=tmp_path)
    assert_one_line(res, "GENRETUNE_CACHE_DIR", f"{cache} is not a directory")
    assert tree(tmp_path) == ["cache"]


def test_tmpdir_a_file_refuses_a_local_search_before_anything_is_written(tmp_path):
    tmpdir = tmp_path / "tmpfile"
    tmpdir.write_text("")
    storage = tmp_path / "runs"
    res = run([*TINY_SEARCH, "--storage-path", str(storage)], env=_env(TMPDIR=str(tmpdir)))
    assert_one_line(res, "TMPDIR", str(tmpdir), "not a directory")
    assert not storage.exists()
    # RAY_TMPDIR, which Ray prefers, is named when it is the one in use.
    res = run(
        [*TINY_SEARCH, "--storage-path", str(storage)],
        env=_env(RAY_TMPDIR=str(tmpdir), TMPDIR=str(tmp_path)),
    )
    assert_one_line(res, "RAY_TMPDIR", str(tmpdir))
    assert tree(tmp_path) == ["tmpfile"]


def test_tmpdir_not_writable_refuses_a_local_search(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes into a mode-500 directory; a file TMPDIR is tested instead")
    tmpdir = tmp_path / "readonly"
    tmpdir.mkdir(mode=0o500)
    storage = tmp_path / "runs"
    try:
        res = run([*TINY_SEARCH, "--storage-path", str(storage)], env=_env(TMPDIR=str(tmpdir)))
    finally:
        tmpdir.chmod(0o700)
    assert_one_line(res, "TMPDIR", str(tmpdir), "not writable")
    assert not storage.exists() and tree(tmpdir) == []


def test_tmpdir_too_long_for_rays_sockets_is_one_line(tmp_path):
    # Ray's longest socket: TMPDIR/ray/session_<26 characters>_<pid>/sockets/plasma_store.
    tmpdir = tmp_path / ("t" * max(1, 120 - len(str(tmp_path))))
    tmpdir.mkdir()
    storage = tmp_path / "runs"
    res = run([*TINY_SEARCH, "--storage-path", str(storage)], env=_env(TMPDIR=str(tmpdir)))
    assert_one_line(res, "TMPDIR", str(tmpdir), "too long", f"limit is {SOCKET_PATH_MAX}")
    assert not storage.exists()
    assert tree(tmpdir) == []  # Ray did not start: no session directory


def test_the_socket_limit_is_rays_own():
    """genretune's socket path and limit agree with Ray's check of them (which raises after Ray
    has created its session directory)."""
    from ray._private.utils import validate_socket_filepath

    from genretune.search.ray_cluster import SOCKET_PATH_MAX as LIMIT
    from genretune.search.ray_cluster import local_socket_path

    assert LIMIT == SOCKET_PATH_MAX
    room = LIMIT - len(local_socket_path("", pid=12345)) - 1  # for the temp dir (and a "/")
    fits = "/" + "t" * (room - 1)
    validate_socket_filepath(local_socket_path(fits, pid=12345))
    assert len(local_socket_path(fits, pid=12345)) == LIMIT
    with pytest.raises(OSError, match="AF_UNIX"):
        validate_socket_filepath(local_socket_path(fits + "t", pid=12345))


def test_home_a_file_refuses_a_local_search_that_must_write_rays_token(tmp_path):
    home = tmp_path / "home"
    home.write_text("")
    storage = tmp_path / "runs"
    env = _env(HOME=str(home), RAY_AUTH_MODE=None, RAY_AUTH_TOKEN=None, RAY_AUTH_TOKEN_PATH=None)
    res = run([*TINY_SEARCH, "--storage-path", str(storage)], env=env)
    assert_one_line(res, "HOME", str(home), "not a directory", ".ray")
    assert not storage.exists()


def test_help_needs_none_of_the_variables(tmp_path):
    bad = tmp_path / "file"
    bad.write_text("")
    env = _env(HOME=str(bad), TMPDIR=str(bad), GENRETUNE_CACHE_DIR=str(bad))
    res = run(["search", "--help"], env=env)
    assert res.returncode == 0 and res.stderr == "" and "--storage-path" in res.stdout
    # (results and export on an experiment: test_results_ignores_unusable_home_tmpdir_and_cache)


# The locale -------------------------------------------------------------------------------------


@pytest.mark.parametrize("utf8_mode", [None, "0"], ids=["C", "C-PYTHONUTF8=0"])
def test_c_locale_data_stats_with_non_ascii_genres_and_paths(unicode_features, utf8_mode):
    env = _c_locale(PYTHONUTF8=utf8_mode)
    res = run(["data", "stats", "--data", str(unicode_features)], env=env)
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    assert "samples (Хип-хоп)" in res.stdout and "samples (Électronique)" in res.stdout
    assert str(unicode_features) in res.stdout


def test_c_locale_without_utf8_mode_refuses_non_ascii_paths_for_ray(unicode_features, tmp_path):
    """PYTHONUTF8=0 in the C locale: Python holds a non-ASCII argument in a form Ray cannot
    take (ray.init fails with a traceback), so a search says so first."""
    storage = tmp_path / "runs"
    res = run(
        [*TINY_SEARCH, "--data", str(unicode_features), "--storage-path", str(storage)],
        env=_c_locale(PYTHONUTF8="0"),
    )
    assert_one_line(res, "LC_ALL=C", "PYTHONUTF8=0", "données")
    assert not storage.exists()


@pytest.mark.slow
def test_c_locale_train_with_non_ascii_genres_and_paths(unicode_features, tmp_path):
    out = tmp_path / "données" / "models"
    res = run(
        ["train", "--data", str(unicode_features), "--epochs", "1", "--base-channels", "4"]
        + ["--output-dir", str(out), "--no-progress"],
        env=_c_locale(),
    )
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    (model_dir,) = out.iterdir()
    assert f"model dir: {model_dir}" in res.stdout
    assert "Électronique" in res.stderr  # the dataset report


# A deleted working directory ------------------------------------------------------------------


def test_deleted_cwd_with_relative_paths_is_one_line(tmp_path):
    gone = tmp_path / "gone"
    res = run(["results", "exp"], preexec_fn=_deleted_cwd(gone))
    assert_one_line(res, "working directory no longer exists", "absolute", "--storage-path runs")
    res = run(
        ["train", "--synthetic-scale", "0.02", "--epochs", "1"], preexec_fn=_deleted_cwd(gone)
    )
    assert_one_line(res, "working directory no longer exists", "--output-dir")
    assert tree(tmp_path) == []


def test_deleted_cwd_without_paths_works(tmp_path):
    res = run(
        ["data", "stats", "--synthetic-scale", "0.02"], preexec_fn=_deleted_cwd(tmp_path / "d")
    )
    assert res.returncode == 0, res.stderr
    assert "Genre distribution" in res.stdout


# Standard output on a full disk ---------------------------------------------------------------


def _to_dev_full(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    with open("/dev/full", "w") as full:
        return subprocess.run(
            [GENRETUNE, *argv],
            stdout=full,
            stderr=subprocess.PIPE,
            encoding="utf-8",
            env=_env(),
            timeout=300,
            **kwargs,
        )


def test_data_stats_to_a_full_disk_is_one_line():
    res = _to_dev_full(["data", "stats", "--synthetic-scale", "0.02"])
    line = assert_one_line(res, "standard output", "cannot write")
    assert line == f"genretune: error: standard output: cannot write ({os.strerror(28)})"


# An MP3 decoder's own notes -------------------------------------------------------------------


def test_prepare_fma_shows_only_its_own_lines_for_clips_that_never_decode(tmp_path):
    pytest.importorskip("soundfile")
    from fma_fixture import make_fma

    fma = make_fma(tmp_path / "fma", n_tracks=4, seconds=1.5)
    # The fixture's broken clips plus two more that never yield audio: random bytes, 0 bytes.
    clips = sorted(fma["audio"].rglob("*.mp3"))
    clips[0].write_bytes(np.random.default_rng(1).bytes(5000))
    clips[1].write_bytes(b"")
    out = tmp_path / "features"
    res = run(
        ["data", "prepare-fma", "--metadata", str(fma["metadata"]), "--audio", str(fma["audio"])]
        + ["--out", str(out), "--subset", "medium", "--workers", "1", "--sample-rate", "8000"]
        + ["--n-fft", "256", "--hop-length", "128", "--n-mels", "32", "--frames", "24"]
        + ["--min-seconds", "0.5"],
    )
    assert res.returncode == 0, res.stderr
    lines = res.stderr.splitlines()
    assert lines and all(line.startswith(("decoding ", "wrote ")) for line in lines), lines
    skipped = (out / "skipped.csv").read_text(encoding="utf-8")
    assert str(clips[0].name) in skipped and str(clips[1].name) in skipped


# One tiny search, read back every way --------------------------------------------------------


@pytest.fixture(scope="module")
def c_locale_experiment(tmp_path_factory) -> dict:
    """A tiny search (1 trial, 1 epoch, its own local Ray) run in the C locale from a deleted
    working directory, on non-ASCII genres, into a storage path under `données/`."""
    root = tmp_path_factory.mktemp("env")
    features = _unicode_feature_dir(root / "données" / "features")
    storage = root / "données" / "runs"
    res = run(
        [*TINY_SEARCH, "--data", str(features), "--name", "exp", "--storage-path", str(storage)],
        env=_c_locale(),
        preexec_fn=_deleted_cwd(root / "gone"),
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Traceback" not in res.stderr
    return {"root": root, "storage": storage, "features": features}


@pytest.mark.slow
def test_results_and_export_in_the_c_locale(c_locale_experiment):
    storage, root = c_locale_experiment["storage"], c_locale_experiment["root"]
    res = run(["results", "exp", "--storage-path", str(storage)], env=_c_locale())
    assert res.returncode == 0, res.stderr
    assert f"{storage / 'exp'}: 1 trials" in res.stdout
    best = root / "données" / "best.json"
    res = run(["export", "exp", "--storage-path", str(storage), "-o", str(best)], env=_c_locale())
    assert res.returncode == 0, res.stderr
    assert str(c_locale_experiment["features"]) in json.dumps(
        json.loads(best.read_text(encoding="utf-8")), ensure_ascii=False
    )


@pytest.mark.slow
def test_results_and_export_from_a_deleted_cwd_with_absolute_paths(c_locale_experiment):
    storage, root = c_locale_experiment["storage"], c_locale_experiment["root"]
    res = run(
        ["results", "exp", "--storage-path", str(storage)], preexec_fn=_deleted_cwd(root / "a")
    )
    assert res.returncode == 0, res.stderr
    assert "1 trials" in res.stdout
    best = root / "best-from-gone.json"
    res = run(
        ["export", "exp", "--storage-path", str(storage), "-o", str(best)],
        preexec_fn=_deleted_cwd(root / "b"),
    )
    assert res.returncode == 0, res.stderr
    assert best.is_file()
    # The relative default of -o is refused, and nothing is written.
    res = run(
        ["export", "exp", "--storage-path", str(storage)], preexec_fn=_deleted_cwd(root / "c")
    )
    assert_one_line(res, "working directory no longer exists", "--output best.json")


@pytest.mark.slow
def test_results_to_a_full_disk_is_one_line(c_locale_experiment):
    res = _to_dev_full(["results", "exp", "--storage-path", str(c_locale_experiment["storage"])])
    assert_one_line(res, "standard output: cannot write", os.strerror(28))


@pytest.mark.slow
def test_results_ignores_unusable_home_tmpdir_and_cache(c_locale_experiment, tmp_path):
    bad = tmp_path / "file"
    bad.write_text("")
    long_tmp = tmp_path / ("t" * 120)
    long_tmp.mkdir()
    env = _env(HOME=str(bad), TMPDIR=str(long_tmp), GENRETUNE_CACHE_DIR=str(bad))
    res = run(["results", "exp", "--storage-path", str(c_locale_experiment["storage"])], env=env)
    assert res.returncode == 0, res.stderr
    assert "1 trials" in res.stdout
