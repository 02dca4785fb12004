"""Outputs: never inside an experiment, never over a device or FIFO, written whole or not at all.

`export`, `results --output`, `results --plots`, `train` and `tune-threshold` on a real tiny
experiment and model, through the real `genretune` binary: a refused output leaves the
experiment byte-identical, and a write that fails (a file-size limit, a full tmpfs) is one
line naming the output, exit 2, with no partial or temporary file and an earlier output intact.
The tests of the writer itself (genretune.output_files, model/toplevel/output_files.py) need
no Ray and run in the fast lane.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import resource
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cli_runner import run_cli

from genretune.data import InputError
from genretune.output_files import (
    atomic_output,
    atomic_outputs,
    check_output_dir,
    check_output_file,
    check_outside_experiment,
    write_bytes_atomically,
)
from genretune.results.experiment_dir import enclosing_experiment

GENRETUNE = str(Path(sys.executable).with_name("genretune"))
TINY = ["--synthetic-scale", "0.02", "--base-channels", "4", "--epochs", "2"]
TRAIN = [*TINY, "--no-progress", "--device", "cpu", "--threads", "1"]
slow = pytest.mark.slow  # starts Ray or trains a model: `make test`, not `make check`


# -- helpers ---------------------------------------------------------------------------------


def _tree(root: Path) -> dict[str, str]:
    """Every path under root: a regular file's content hash, else its type (never opened: a
    FIFO would block, a link to /dev/full would never end)."""
    tree = {}
    for p in sorted(Path(root).rglob("*")):
        mode = os.lstat(p).st_mode
        if stat.S_ISREG(mode):
            tree[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
        elif stat.S_ISLNK(mode):
            tree[str(p.relative_to(root))] = f"link to {os.readlink(p)}"
        else:
            tree[str(p.relative_to(root))] = f"mode {stat.S_IFMT(mode):o}"
    return tree


def _temporaries(root: Path) -> list[str]:
    return [str(p) for p in Path(root).rglob(".*") if ".tmp" in p.name]


def _one_error_line(res, *fragments: str) -> str:
    out = f"exit {res.returncode}\nstdout: {res.stdout[-1500:]}\nstderr: {res.stderr[-3000:]}"
    assert res.returncode == 2, out
    assert "Traceback" not in res.stderr, out
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, out
    assert lines[0].startswith("genretune: error: "), out
    for fragment in fragments:
        assert fragment in lines[0], out
    return lines[0]


def _limit_file_size(limit: int):
    def preexec() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return preexec


def _run(argv: list[str], cwd: Path, limit: int | None = None) -> subprocess.CompletedProcess:
    """`genretune ARGV` in a process of its own, optionally with a file-size limit (ulimit -f):
    no bytecode is written, so the limit meets only the command's own outputs."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    preexec = _limit_file_size(limit) if limit else None
    return subprocess.run([GENRETUNE, *argv], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600, preexec_fn=preexec)  # fmt: skip


def _special(path: Path, kind: str) -> Path:
    """A FIFO, or a character device behaving as /dev/full (every write: no space left), at
    `path`: a device node of its own where the system allows mknod, else a symbolic link to
    /dev/full. Never /dev/full itself: a regression that renamed a file over it as root would
    replace the machine's device."""
    if kind == "fifo":
        os.mkfifo(path)
        return path
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 7))
    except OSError:
        if not Path("/dev/full").exists():
            pytest.skip("no mknod permission and no /dev/full here")
        path.symlink_to("/dev/full")
    return path


def _identity(path: Path) -> tuple:
    """What a replacement would change: the entry itself (lstat) and what it points to."""
    entry, target = os.lstat(path), os.stat(path)
    return (entry.st_mode, entry.st_ino, target.st_mode, target.st_rdev, target.st_ino)


@contextlib.contextmanager
def _full_tmpfs(path: Path):
    """A 64 KiB tmpfs at path, filled to the last byte once `fill()` is called; skips the test
    where mounting is not permitted (not root, or a container without the capability)."""
    path.mkdir(parents=True)
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(path)],
                         capture_output=True, text=True)  # fmt: skip
    if res.returncode != 0:
        path.rmdir()
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {res.stderr.strip()}")

    def fill() -> None:
        """Take every free byte (unbuffered: a failed write leaves nothing to flush)."""
        with open(path / "filler", "wb", buffering=0) as fh:
            for chunk in (65536, 4096, 1):
                with contextlib.suppress(OSError):
                    while True:
                        fh.write(b"\0" * chunk)

    try:
        yield fill
    finally:
        subprocess.run(["umount", str(path)], check=False)


# -- the writer (no Ray: fast lane) ----------------------------------------------------------


def test_a_failed_write_leaves_the_earlier_file_and_no_temporary(tmp_path):
    path = tmp_path / "best.json"
    write_bytes_atomically(path, b"earlier\n", "-o")
    with pytest.raises(RuntimeError), atomic_output(path, "-o") as tmp:
        tmp.write_bytes(b"half a fi")
        raise RuntimeError("the writer failed mid-way")
    assert path.read_bytes() == b"earlier\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.json"]
    write_bytes_atomically(path, b"later\n", "-o")
    assert path.read_bytes() == b"later\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.json"]


def test_outputs_are_renamed_into_place_together_or_not_at_all(tmp_path):
    earlier = tmp_path / "table.csv"
    earlier.write_text("earlier\n")
    existing = tmp_path / "plots"
    existing.mkdir()
    (existing / "a.png").write_text("old a\n")
    (existing / "notes.txt").write_text("mine\n")
    before = _tree(tmp_path)
    new_dir = tmp_path / "new" / "deeper" / "model"
    with pytest.raises(KeyboardInterrupt), atomic_outputs() as outputs:
        with outputs.file(earlier, "--output") as tmp:
            tmp.write_text("new table\n")
        with outputs.directory(existing, "--plots") as staging:
            (staging / "a.png").write_text("new a\n")
        with outputs.directory(new_dir, "--with-checkpoint") as staging:
            (staging / "model.pt").write_bytes(b"w" * 100)
            raise KeyboardInterrupt  # Ctrl-C during the last output
    assert _tree(tmp_path) == before, "nothing replaced, created (parents too) or left behind"

    with atomic_outputs() as outputs:
        with outputs.file(earlier, "--output") as tmp:
            tmp.write_text("new table\n")
        with outputs.directory(existing, "--plots") as staging:
            (staging / "a.png").write_text("new a\n")
        with outputs.directory(new_dir, "--with-checkpoint") as staging:
            (staging / "model.pt").write_bytes(b"w" * 100)
    assert earlier.read_text() == "new table\n"
    assert (existing / "a.png").read_text() == "new a\n"
    assert (existing / "notes.txt").read_text() == "mine\n", "other files in a dir are kept"
    assert (new_dir / "model.pt").read_bytes() == b"w" * 100
    assert not _temporaries(tmp_path)


def test_a_file_size_limit_is_one_error_naming_the_file_with_the_earlier_file_intact(tmp_path):
    """Under ulimit -f a write fails with EFBIG (the writer ignores SIGXFSZ, which would kill
    the process): one InputError naming the output, nothing left of the new content."""
    path = tmp_path / "out.csv"
    path.write_bytes(b"earlier\n")
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from genretune.data import InputError\n"
        "from genretune.output_files import write_bytes_atomically\n"
        "try:\n"
        f"    write_bytes_atomically(Path({str(path)!r}), b'x' * 100_000, '--output')\n"
        "except InputError as exc:\n"
        "    print(exc)\n"
        "    sys.exit(2)\n"
    )
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         preexec_fn=_limit_file_size(10_000), timeout=120)  # fmt: skip
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    assert res.stdout.strip() == (
        f"--output {path}: cannot write it: File too large "
        "(nothing written; the existing file is kept)"
    )
    assert path.read_bytes() == b"earlier\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]


def test_a_full_disk_is_one_error_naming_the_file(tmp_path):
    with _full_tmpfs(tmp_path / "small") as fill:
        path = tmp_path / "small" / "best.json"
        path.write_bytes(b"earlier\n")
        fill()
        before = _tree(tmp_path / "small")
        with pytest.raises(InputError) as err:
            write_bytes_atomically(path, b"{}" * 10_000, "-o")
        assert str(err.value) == (
            f"-o {path}: cannot write it: No space left on device "
            "(nothing written; the existing file is kept)"
        )
        assert _tree(tmp_path / "small") == before
        with pytest.raises(InputError, match="--plots .*No space left on device"):
            with (
                atomic_outputs() as outputs,
                outputs.directory(path.parent / "plots", "--plots") as d,
            ):
                (d / "a.png").write_bytes(b"p" * 10_000)
        assert _tree(tmp_path / "small") == before


def test_a_device_or_fifo_is_refused_as_an_output_file(tmp_path):
    fifo = tmp_path / "out.csv"
    os.mkfifo(fifo)
    link = tmp_path / "link.json"
    link.symlink_to(fifo)
    for target in (fifo, link, _special(tmp_path / "full", "device")):
        identity = _identity(target)
        for force in (False, True):
            with pytest.raises(InputError, match="not a regular file"):
                check_output_file(target, "-o", force=force)
        with pytest.raises(InputError, match="not a regular file"):
            with atomic_output(target, "-o") as tmp:
                tmp.write_text("never\n")
        assert _identity(target) == identity, "replaced"
    assert stat.S_ISFIFO(fifo.stat().st_mode) and link.is_symlink()
    # In a directory output, a FIFO of an output's name is refused before anything is renamed.
    plots = tmp_path / "plots"
    plots.mkdir()
    os.mkfifo(plots / "a.png")
    (plots / "b.png").write_text("old\n")
    with pytest.raises(InputError, match="a.png: exists and is not a regular file"):
        with atomic_outputs() as outputs, outputs.directory(plots, "--plots") as staging:
            (staging / "b.png").write_text("new\n")
            (staging / "a.png").write_text("new\n")
    assert stat.S_ISFIFO((plots / "a.png").stat().st_mode)
    assert (plots / "b.png").read_text() == "old\n"
    assert sorted(p.name for p in plots.iterdir()) == ["a.png", "b.png"]


def test_outputs_inside_an_experiment_or_at_its_lock_are_refused(tmp_path):
    exp = tmp_path / "runs" / "exp"
    (exp / "trial_1").mkdir(parents=True)
    (exp / "genretune_search.json").write_text("{}\n")
    outside = [tmp_path / "best.json", tmp_path / "runs" / "other.json", tmp_path / "runs"]
    for target in outside:
        check_outside_experiment(target, "-o", enclosing_experiment(target))
    for target, where in (
        (exp / "genretune_search.json", "inside"),
        (exp / "trial_1" / "params.json", "inside"),
        (exp / "trial_1" / "new" / "dir", "inside"),
        (exp, "inside"),
        (tmp_path / "runs" / "exp.lock", "the writer lock of"),
    ):
        with pytest.raises(InputError) as err:
            check_outside_experiment(target, "--plots", enclosing_experiment(target))
        assert str(err.value) == (
            f"--plots {target}: {where} the experiment {exp}; write outputs outside it"
        )
    # Through a symbolic link too.
    link = tmp_path / "link"
    link.symlink_to(exp / "trial_1")
    with pytest.raises(InputError, match="inside the experiment"):
        check_outside_experiment(link / "x.csv", "--output", enclosing_experiment(link / "x.csv"))
    check_output_dir(tmp_path / "fresh" / "plots", "--plots")  # creatable: fine


# -- the commands, on a real tiny experiment (Ray) -------------------------------------------


@pytest.fixture(scope="module")
def experiment(local_ray, tmp_path_factory) -> Path:
    from genretune.search.cli.search import settings_from_argv
    from genretune.search.launch import run_search

    root = tmp_path_factory.mktemp("outputs-runs")
    argv = [*TINY, "--num-samples", "2", "--name", "exp", "--storage-path", str(root)]
    run_search(settings_from_argv([*argv, "--progress-interval", "1000"]))
    return root / "exp"


@pytest.fixture
def work(tmp_path: Path) -> Path:
    d = tmp_path / "work"
    d.mkdir()
    return d


def _cli(argv: list[str], work: Path):
    """`genretune ARGV` forked from a process that imported the CLI once (cli_runner)."""
    return run_cli(argv, cwd=work, scratch=work.parent, timeout=300)


def _inside_targets(exp: Path) -> dict[str, Path]:
    trial = sorted(exp.glob("trial_*"))[0]
    return {
        "settings file": exp / "genretune_search.json",
        "file in a trial dir": trial / "params.json",
        "new file in a trial dir": trial / "new.csv",
        "experiment state": sorted(exp.glob("experiment_state*.json"))[0],
        "lock": exp.with_name(exp.name + ".lock"),
    }


INSIDE = ["settings file", "file in a trial dir", "new file in a trial dir", "experiment state",
          "lock"]  # fmt: skip


@slow
@pytest.mark.parametrize("target_name", INSIDE)
@pytest.mark.parametrize("command", ["export -o", "export --with-checkpoint", "results --output",
                                     "results --plots"])  # fmt: skip
def test_an_output_inside_the_experiment_is_refused_and_it_stays_byte_identical(
    experiment, work, command, target_name
):
    target = _inside_targets(experiment)[target_name]
    storage = experiment.parent
    before = _tree(storage)
    name, flag = command.split()
    argv = [name, "exp", "--storage-path", str(storage), "--force"]
    if command == "export --with-checkpoint":
        argv += ["-o", str(work / "best.json"), flag, str(target)]
    elif command == "results --plots":
        argv += [flag, str(target if target_name in ("lock", "new file in a trial dir")
                            else target.parent)]  # fmt: skip
    else:
        argv += [flag, str(target)]
    where = "the writer lock of" if target_name == "lock" else "inside"
    _one_error_line(_cli(argv, work), f"{flag} ", f"{where} the experiment {experiment}")
    assert _tree(storage) == before, "the experiment changed"
    assert not any(work.iterdir()), "the command wrote something"


@slow
def test_the_experiment_dir_itself_and_a_train_output_dir_inside_it_are_refused(experiment, work):
    storage = experiment.parent
    before = _tree(storage)
    trial = sorted(experiment.glob("trial_*"))[0]
    for argv, flag in (
        (["results", "exp", "--plots", str(experiment)], "--plots"),
        (
            ["export", "exp", "-o", "b.json", "--with-checkpoint", str(experiment)],
            "--with-checkpoint",
        ),
        (["train", *TRAIN, "--output-dir", str(trial / "models")], "--output-dir"),
        (["tune-threshold", "--predictions", str(trial / "p.npz")], "--predictions"),
    ):
        res = _cli([*argv, "--storage-path", str(storage)] if argv[0] in ("results", "export")
                   else argv, work)  # fmt: skip
        _one_error_line(res, f"{flag} ", f"inside the experiment {experiment}")
    assert _tree(storage) == before
    assert not any(work.iterdir())


@slow
@pytest.mark.parametrize("kind", ["device", "fifo"])
@pytest.mark.parametrize("command", ["export -o", "export --with-checkpoint", "results --output",
                                     "results --plots"])  # fmt: skip
def test_a_device_or_fifo_as_output_is_refused_untouched(experiment, work, command, kind):
    name, flag = command.split()
    argv = [name, "exp", "--storage-path", str(experiment.parent), "--force"]
    if flag in ("-o", "--output"):
        target = _special(work / "out.json", kind)
        argv += [flag, str(target)]
    else:
        # A directory output holding a device or FIFO under the name of a file it writes.
        directory = work / "dir"
        directory.mkdir()
        inner = "model.pt" if flag == "--with-checkpoint" else "search_progress.png"
        target = _special(directory / inner, kind)
        argv += [flag, str(directory)]
        if name == "export":
            argv += ["-o", str(work / "best.json")]
    before, identity = _tree(work), _identity(target)
    # A FIFO opened for writing would block: the runner's timeout ends the test, not a hang.
    _one_error_line(_cli(argv, work), f"{flag} ", "not a regular file")
    assert _identity(target) == identity, "replaced"
    assert _tree(work) == before
    assert not _temporaries(work)


@pytest.fixture(scope="module")
def earlier(experiment, tmp_path_factory) -> Path:
    """Outputs of earlier, successful runs (best.json, model/, table.csv, plots/), made once
    and copied into each test's directory."""
    work = tmp_path_factory.mktemp("earlier")
    storage = str(experiment.parent)
    res = _run(["export", "exp", "--storage-path", storage, "-o", "best.json",
                "--with-checkpoint", "model"], work)  # fmt: skip
    assert res.returncode == 0, res.stderr
    res = _run(["results", "exp", "--storage-path", storage, "--output", "table.csv",
                "--plots", "plots"], work)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert not _temporaries(work)
    return work


def _copy_earlier(earlier: Path, work: Path) -> None:
    for p in earlier.iterdir():
        (shutil.copytree if p.is_dir() else shutil.copy2)(p, work / p.name)


# (id, command, file-size limit, flags, the output named in the error). The config (3-4 KB)
# and the table (~3 KB) exceed 1000 bytes; model.pt (~25 KB) and the plots (30-60 KB each, some
# under the limit) exceed 20000, which the config and the table do not.
FAILING_WRITES = [
    ("export -o", "export", 1000, ["-o", "best.json"], "-o best.json"),
    ("export -o to a new file", "export", 1000, ["-o", "new.json"], "-o new.json"),
    ("export with a checkpoint", "export", 20_000,
     ["-o", "best.json", "--with-checkpoint", "model"], "--with-checkpoint model"),
    ("export with a new checkpoint dir", "export", 20_000,
     ["-o", "best.json", "--with-checkpoint", "new/model"], "--with-checkpoint new/model"),
    ("results --output csv", "results", 1000, ["--output", "table.csv"], "--output table.csv"),
    ("results --output parquet", "results", 1000, ["--output", "t.parquet"], "--output t.parquet"),
    ("results --plots", "results", 20_000, ["--plots", "plots"], "--plots plots"),
    ("results --output and --plots", "results", 20_000,
     ["--output", "table.csv", "--plots", "plots"], "--plots plots"),
    ("results --plots into a new dir", "results", 20_000, ["--plots", "new/plots"],
     "--plots new/plots"),
]  # fmt: skip


@slow
@pytest.mark.parametrize("command, limit, flags, named", [c[1:] for c in FAILING_WRITES],
                         ids=[c[0] for c in FAILING_WRITES])  # fmt: skip
def test_a_file_size_limit_is_one_line_naming_the_output_and_writes_nothing(
    experiment, earlier, work, command, limit, flags, named
):
    _copy_earlier(earlier, work)
    before, before_exp = _tree(work), _tree(experiment.parent)
    res = _run([command, "exp", "--storage-path", str(experiment.parent), *flags, "--force"],
               work, limit)  # fmt: skip
    line = _one_error_line(res, f"{named}: cannot write it: File too large (nothing written")
    assert _tree(work) == before, f"{line}: outputs changed, created or left behind"
    assert not _temporaries(work)
    assert _tree(experiment.parent) == before_exp, "a reader wrote into the experiment"


@slow
@pytest.mark.parametrize(
    "command, flags, named",
    [
        ("export", ["-o", "best.json", "--with-checkpoint", "model"], "--with-checkpoint model"),
        ("export", ["-o", "best.json"], "-o best.json"),
        ("results", ["--output", "table.csv"], "--output table.csv"),
        ("results", ["--plots", "plots"], "--plots plots"),
    ],
    ids=["export with a checkpoint", "export -o", "results --output", "results --plots"],
)
def test_a_full_disk_is_one_line_naming_the_output_and_writes_nothing(
    experiment, earlier, tmp_path, command, flags, named
):
    with _full_tmpfs(tmp_path / "small") as fill:
        work = tmp_path / "small"
        for name in ("best.json", "table.csv"):  # earlier outputs, then the disk fills up
            shutil.copy2(earlier / name, work / name)
        (work / "model").mkdir()
        shutil.copy2(earlier / "model" / "config.json", work / "model" / "config.json")
        (work / "plots").mkdir()
        fill()
        before, before_exp = _tree(work), _tree(experiment.parent)
        res = _run([command, "exp", "--storage-path", str(experiment.parent), *flags,
                    "--force"], work)  # fmt: skip
        _one_error_line(res, f"{named}: cannot write it: No space left on device")
        assert _tree(work) == before
        assert not _temporaries(work)
        assert _tree(experiment.parent) == before_exp


# -- train and tune-threshold (a real tiny model) --------------------------------------------


@slow
def test_a_model_dir_is_written_whole_or_not_at_all(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    # A file-size limit below the weights' size: nothing of the model dir, nor its parents.
    res = _run(["train", *TRAIN, "--output-dir", "models/deep"], work, limit=20_000)
    assert res.returncode == 2, res.stderr[-3000:]
    assert "Traceback" not in res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("genretune: error: --output-dir models/deep/multilabel_cnn_"), last
    assert "cannot write it: File too large (nothing written)" in last
    assert not any(work.iterdir()), sorted(map(str, work.rglob("*")))

    res = _run(["train", *TRAIN, "--output-dir", "models"], work)
    assert res.returncode == 0, res.stderr[-3000:]
    (model_dir,) = (work / "models").iterdir()
    assert {"model.pt", "config.json", "metrics.json", "history.csv"} <= {
        p.name for p in model_dir.iterdir()
    }
    assert not _temporaries(work)

    # tune-threshold rewrites its files in the model dir: all of them or none.
    before = _tree(work)
    res = _run(["tune-threshold", "--model-dir", str(model_dir.relative_to(work))], work, 5000)
    _one_error_line(res, "--model-dir models/", "cannot write it: File too large")
    assert _tree(work) == before
    res = _run(["tune-threshold", "--model-dir", str(model_dir), "--output-dir", "tuned"], work,
               5000)  # fmt: skip
    _one_error_line(res, "--output-dir tuned: cannot write it: File too large (nothing written)")
    assert _tree(work) == before
    res = _run(["tune-threshold", "--model-dir", str(model_dir), "--output-dir", "tuned"], work)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (work / "tuned" / "threshold_tuning_results.json").is_file()
    assert not _temporaries(work)
