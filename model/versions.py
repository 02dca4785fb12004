"""The versions of genretune and the packages it ran with, as installed (read from package
metadata: no package is imported to ask it, so readers of an experiment stay light)."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version

TRAINING_PACKAGES = ("torch", "numpy", "scikit-learn")
SEARCH_PACKAGES = ("torch", "ray", "optuna", "numpy")


def installed_version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:  # genretune run from a source tree that was never installed
        return "unknown"


def genretune_version() -> str:
    return installed_version("genretune")


def package_versions(packages: tuple[str, ...] = TRAINING_PACKAGES) -> dict[str, str]:
    """{"genretune", "python", and each of `packages`: its version}."""
    return {
        "genretune": genretune_version(),
        "python": platform.python_version(),
        **{name: installed_version(name) for name in packages},
    }
