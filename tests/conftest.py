"""Shared fixtures: an isolated dataset cache and small feature dirs made by the tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import make_feature_dir

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generated datasets go to a per-session cache, never the user's home."""
    path = tmp_path_factory.mktemp("genretune-cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("GENRETUNE_CACHE_DIR", str(path))
    yield path
    mp.undo()


@pytest.fixture(scope="session", autouse=True)
def fresh_experiment_dirs():
    """Ray copies a search's progress.csv files and state into the experiment dir when it saves
    the experiment, every 10 s or more by default. The tests interrupt tiny searches at a given
    epoch, seen in the experiment dir, and such a search may be over within 10 s: save every
    second (the env var is Ray's own, read by searches in this process and in the commands the
    tests start)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("TUNE_GLOBAL_CHECKPOINT_S", "1")
    yield
    mp.undo()


@pytest.fixture
def feature_dir(tmp_path: Path) -> Path:
    return make_feature_dir(tmp_path / "features")


@pytest.fixture(scope="session")
def local_ray(isolated_cache):
    """One local Ray for the whole session (2 CPUs, no dashboard)."""
    import ray

    context = ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.test_session_dir = Path(context.address_info["session_dir"])
    yield ray
    ray.shutdown()


@pytest.fixture
def logged_epochs(local_ray):
    """logged_epochs(name): the rows of the newest trial's progress.csv of experiment `name`,
    as the driver logs them, before Ray copies them into the experiment dir (which it does
    only when it saves the experiment)."""

    def rows(name: str):
        import pandas as pd

        found = local_ray.test_session_dir.glob(
            f"artifacts/*/{name}/driver_artifacts/trial_*/progress.csv"
        )
        newest = max(found, key=lambda p: p.stat().st_mtime, default=None)
        try:
            return pd.read_csv(newest) if newest else pd.DataFrame()
        except (pd.errors.EmptyDataError, FileNotFoundError):
            return pd.DataFrame()

    return rows
