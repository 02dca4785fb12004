"""Memory of concurrent trials: private and proportional bytes from /proc/PID/smaps."""

from __future__ import annotations

import os
import statistics
import threading
import time
from pathlib import Path

from speed.common import demo_flat


def _smaps(pid: int) -> dict[str, int]:
    """USS and PSS of a process, and its private bytes inside shared-memory mappings (Ray's
    object store: a feature array copied into a trial would show up there or in USS)."""
    uss = pss = shm_private = 0
    shm = False
    try:
        text = Path(f"/proc/{pid}/smaps").read_text()
    except OSError:
        return {}
    for line in text.splitlines():
        key, _, rest = line.partition(" ")
        if not key.endswith(":"):  # a mapping's header line
            shm = "/dev/shm/" in rest or "plasma" in rest
            continue
        if key == "Pss:":
            pss += int(rest.split()[0]) * 1024
        elif key in ("Private_Clean:", "Private_Dirty:"):
            value = int(rest.split()[0]) * 1024
            uss += value
            shm_private += value if shm else 0
    return {"pss": pss, "uss": uss, "shm_private": shm_private}


def _trial_worker_pids() -> list[int]:
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes()
        except OSError:
            continue
        if b"ray::ImplicitFunc" in text or b"ray::train_trial" in text:
            pids.append(int(cmdline.parent.name))
    return pids


class PeakSampler:
    """Samples the processes `pids()` names every 0.2 s while its block runs: each one's peak
    USS/PSS/shared-memory-private bytes and the peak of their summed PSS."""

    def __init__(self, pids) -> None:
        self.pids = pids
        self.per_pid: dict[int, dict[str, int]] = {}
        self.total_pss = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._done.is_set():
            total = 0
            for pid in self.pids():
                m = _smaps(pid)
                if not m:
                    continue
                total += m["pss"]
                peak = self.per_pid.setdefault(pid, dict.fromkeys(m, 0))
                for key, value in m.items():
                    peak[key] = max(peak[key], value)
            self.total_pss = max(self.total_pss, total)
            time.sleep(0.2)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()


def search_pids() -> set[int]:
    """This driver and every Ray process of the machine (raylet, GCS, workers, ...)."""
    pids = {os.getpid()}
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes()
        except OSError:
            continue
        if b"ray::" in text or b"/ray/" in text or b"raylet" in text or b"gcs_server" in text:
            pids.add(int(cmdline.parent.name))
    return pids


def trial_memory(storage: Path, scale: float, name: str) -> dict:
    """Peak USS/PSS per trial worker and of the whole search, 2 concurrent trials."""
    from genretune.data import load_dataset
    from genretune.model.config import config_from_flat
    from genretune.search.cli.search import settings_from_argv
    from genretune.search.launch import run_search

    features = load_dataset(config_from_flat(demo_flat(synthetic_scale=scale)).data).features
    argv = [
        "search",
        "--name",
        name,
        "--storage-path",
        str(storage),
        "--synthetic-scale",
        str(scale),
        "--base-channels",
        "16",
        "--num-samples",
        "2",
        "--epochs",
        "1",
        "--grace-period",
        "1",
        "--max-concurrent",
        "2",
        "--progress-interval",
        "100000",
    ]
    settings = settings_from_argv(argv[1:])
    earlier = set(_trial_worker_pids())  # idle workers of earlier runs are not this run's trials
    with PeakSampler(lambda: set(_trial_worker_pids()) - earlier) as peaks:
        run_search(settings)
    return {
        "scale": scale,
        "feature_bytes": int(features.nbytes),
        "worker_peak_uss": sorted(p["uss"] for p in peaks.per_pid.values()),
        "worker_peak_pss": sorted(p["pss"] for p in peaks.per_pid.values()),
        "worker_peak_shm_private": max(
            (p["shm_private"] for p in peaks.per_pid.values()), default=0
        ),
        "workers_total_pss_peak": peaks.total_pss,
    }


def memory(storage: Path, repeats: int = 3) -> dict:
    """Trial USS growth from data scale 0.1 to 1.0: runs alternate between the scales and the
    medians of every worker's peak are compared (a worker's fixed working memory varies by tens
    of MiB from run to run, more than the growth being measured)."""
    runs: dict[float, list[dict]] = {0.1: [], 1.0: []}
    for rep in range(repeats):
        for scale in runs:
            runs[scale].append(trial_memory(storage, scale, f"mem_{scale}_{rep}"))
    peaks = {s: [u for r in rs for u in r["worker_peak_uss"]] for s, rs in runs.items()}
    growth = statistics.median(peaks[1.0]) - statistics.median(peaks[0.1])
    extra_features = runs[1.0][0]["feature_bytes"] - runs[0.1][0]["feature_bytes"]
    per_run = [
        statistics.median(large["worker_peak_uss"]) - statistics.median(small["worker_peak_uss"])
        for small, large in zip(runs[0.1], runs[1.0], strict=True)
    ]
    return {
        "runs": {str(s): rs for s, rs in runs.items()},
        "repeats": repeats,
        "uss_growth_bytes": growth,
        "uss_growth_per_repeat_bytes": per_run,
        "feature_growth_bytes": extra_features,
        "uss_growth_over_feature_growth": growth / extra_features,
        "max_shm_private_bytes": max(
            r["worker_peak_shm_private"] for rs in runs.values() for r in rs
        ),
        "workers_total_pss_peak_scale_1": max(r["workers_total_pss_peak"] for r in runs[1.0]),
    }
