"""The ray and experiment parts: genretune's own search path (run_search: checks, the trial
monitor, stoppers, storage, settlement of the study) on a real local Ray with 32 logical CPUs,
trials played by the stand-in trainable; then the commands a user runs on the experiment."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

EPOCHS = 15
GENRETUNE = str(Path(sys.executable).with_name("genretune"))


class DriverSampler:
    """This process's resident memory and CPU time, with the trials the experiment has so far
    (its trial dirs), sampled every `interval` seconds in a thread."""

    def __init__(self, experiment: Path, interval: float = 1.0) -> None:
        self.experiment = experiment
        self.samples: list[dict[str, float]] = []
        self._stop = threading.Event()
        self._start = time.perf_counter()
        self._sample()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)
        self._thread.start()

    @staticmethod
    def rss_mb() -> float:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def _trials(self) -> int:
        try:
            return sum(1 for p in self.experiment.iterdir() if p.name.startswith("trial_"))
        except OSError:
            return 0

    def _sample(self) -> None:
        self.samples.append({
            "s": round(time.perf_counter() - self._start, 1),
            "trials": self._trials(),
            "rss_mb": round(self.rss_mb()),
            "cpu_s": round(time.process_time(), 2),
        })  # fmt: skip

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self._sample()

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        rss = [x["rss_mb"] for x in self.samples] or [self.rss_mb()]
        return {"start_mb": round(rss[0]), "peak_mb": round(max(rss)), "end_mb": round(rss[-1])}


def _settings(root: Path, name: str, trials: int, workers: int, extra: list[str]):
    from genretune.search.cli.search import settings_from_argv

    argv = ["--name", name, "--storage-path", str(root), "--num-samples", str(trials)]
    argv += ["--max-concurrent", str(workers), "--epochs", str(EPOCHS), "--patience", str(EPOCHS)]
    argv += ["--scheduler", "fifo", "--progress-interval", "60", "--synthetic-scale", "0.02"]
    return settings_from_argv([*argv, *extra])


def _local_ray(workers: int) -> None:
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)


# Two objectives, so that the experiment the ray part leaves is the one the experiment part
# reads (`results --pareto` needs them): one run of 1,000 trials serves both.
OBJECTIVES = ["--objectives", "val_f1,val_coverage"]
RAY_PART = "ray-part"


def run_ray_part(root: Path, trials: int, workers: int, seconds: float) -> dict[str, Any]:
    """The ray part; its experiment is left at root / RAY_PART."""
    from genretune.search.launch import run_search
    from scaling.standin import launch_with_standin

    _local_ray(workers)
    launch_with_standin(seconds)
    # The driver's libraries are loaded before the baseline: the growth is the search's own.
    import optuna  # noqa: F401
    import torch  # noqa: F401
    from ray import tune  # noqa: F401

    from genretune.search import algorithms, trainable  # noqa: F401

    sampler = DriverSampler(root / RAY_PART)
    start = time.perf_counter()
    results = run_search(_settings(root, RAY_PART, trials, workers, OBJECTIVES))
    wall = time.perf_counter() - start
    rss = sampler.stop()
    ideal = trials * EPOCHS * seconds / workers
    return {
        "trials": len(results),
        "errors": len(results.errors),
        "concurrent": workers,
        "seconds_per_epoch": seconds,
        "wall_s": round(wall, 1),
        "ideal_s": round(ideal, 1),
        "wall_over_ideal": round(wall / ideal, 3),
        "driver_rss_mb": rss,
        # Every sample: seconds, trials so far, the driver's RSS (MB) and CPU time (s).
        "driver_curve": sampler.samples[:: max(1, len(sampler.samples) // 120)],
    }


def build_experiment(root: Path, name: str, trials: int, workers: int, seconds: float) -> Path:
    """A finished two-objective experiment of `trials` stand-in trials of EPOCHS epochs."""
    from genretune.search.launch import run_search
    from scaling.standin import launch_with_standin

    _local_ray(workers)
    launch_with_standin(seconds)
    run_search(_settings(root, name, trials, workers, OBJECTIVES))
    return root / name


def _timed(argv: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    res = subprocess.run(argv, capture_output=True, text=True, cwd=cwd)
    seconds = time.perf_counter() - start
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{res.stderr[-2000:]}")
    return round(seconds, 2)


def run_experiment_part(exp: Path, trials: int) -> dict[str, Any]:
    storage, name = str(exp.parent), exp.name
    loader = (
        "import time; t = time.perf_counter()\n"
        "from genretune.results import load_experiment\n"
        f"e = load_experiment({name!r}, storage_path={storage!r})\n"
        f"assert len(e.trials) == {trials}, len(e.trials)\n"
        "print(time.perf_counter() - t)\n"
    )
    start = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", loader], capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"the loader failed:\n{res.stderr[-2000:]}")
    load_s = round(time.perf_counter() - start, 2)
    return {
        "trials": trials,
        "results_s": _timed([GENRETUNE, "results", name, "--storage-path", storage], exp.parent),
        "export_s": _timed(
            [
                GENRETUNE,
                "export",
                name,
                "--storage-path",
                storage,
                "-o",
                str(exp.parent / "b.json"),
                "--force",
            ],
            exp.parent,
        ),
        "pareto_s": _timed(
            [GENRETUNE, "results", name, "--storage-path", storage, "--pareto"], exp.parent
        ),
        "resume_s": _timed(
            [GENRETUNE, "search", "--resume", name, "--storage-path", storage], exp.parent
        ),
        "load_s": load_s,
        "load_in_process_s": round(float(res.stdout.strip().splitlines()[-1]), 2),
        "python_start_s": _timed([sys.executable, "-c", "import genretune.results"], exp.parent),
    }
