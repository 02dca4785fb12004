"""A search's wall time against the sum of its trials' training time over the concurrency."""

from __future__ import annotations

import time
from pathlib import Path

from speed.memory import PeakSampler, search_pids


def search_overhead(storage: Path, samples: int) -> dict:
    """A demo-profile search (its epochs, patience and ASHA) of `samples` trials."""
    from genretune.search.cli.search import settings_from_argv
    from genretune.search.launch import run_search

    argv = [
        "search",
        "--name",
        "overhead",
        "--storage-path",
        str(storage),
        "--num-samples",
        str(samples),
        "--max-concurrent",
        "2",
        "--progress-interval",
        "100000",
    ]
    settings = settings_from_argv(argv[1:])
    began = time.monotonic()
    with PeakSampler(search_pids) as peaks:
        results = run_search(settings)
    wall = time.monotonic() - began
    busy = float(results.get_dataframe()["time_total_s"].sum())
    return {
        "peak_pss_bytes": peaks.total_pss,
        "trials": samples,
        "wall_s": wall,
        "sum_trial_s": busy,
        "concurrency": 2,
        "overhead_ratio": wall / (busy / 2),
    }
