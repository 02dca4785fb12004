"""The searches search_efficiency.py runs for real: their `genretune search` command lines,
on the demo profile's task or a curve bank's (`--bank`: its data and training length)."""

from __future__ import annotations

from pathlib import Path

# The task every search runs (--bank: a curve bank's data and training length, as
# simulate.py --bank replays it); none: the demo profile's.
TASK: list[str] = []


def task_epochs() -> int:
    """The epochs of the task's trials (the demo profile's, or the bank's)."""
    from genretune.search.cli.search import settings_from_argv

    return settings_from_argv(["--profile", "demo", *TASK]).base.optim.epochs


def _search_argv(storage: Path, name: str, seed: int, budget: int, epochs: int, extra: list[str]):
    extra = [a.replace("{epochs}", str(epochs)) for a in [*TASK, *extra]]
    return [
        "search",
        "--name",
        name,
        "--storage-path",
        str(storage),
        "--seed",
        str(seed),
        "--data-seed",
        "0",
        "--num-samples",
        "1000",  # the budget ends the search, not the sample count
        "--budget-epochs",
        str(budget),
        "--max-concurrent",
        "2",
        "--progress-interval",
        "1000000",
        *extra,
    ]


def settings_for_method(storage: Path, seed: int, budget: int, extra: list[str], name="check"):
    """The settings a method's search runs with (nothing is started)."""
    from genretune.search.cli.search import settings_from_argv

    epochs = task_epochs()
    return settings_from_argv(_search_argv(storage, name, seed, budget, epochs, extra)[1:])
