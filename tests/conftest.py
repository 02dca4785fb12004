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


@pytest.fixture
def feature_dir(tmp_path: Path) -> Path:
    return make_feature_dir(tmp_path / "features")


@pytest.fixture(scope="session")
def local_ray(isolated_cache):
    """One local Ray for the whole session (2 CPUs, no dashboard)."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
