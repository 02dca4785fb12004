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


class RssSampler:
    """This process's resident memory, sampled every `interval` seconds in a thread."""

    def __init__(self, interval: float = 1.0) -> None:
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._start = time.perf_counter()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)
        self._thread.start()

    @staticmethod
    def rss_mb() -> float:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.samples.append((time.perf_counter() - self._start, self.rss_mb()))

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        rss = [r for _, r in self.samples] or [self.rss_mb()]
        return {"start_mb": round(rss[0]), "peak_mb": round(max(rss)), "end_mb": round(rss[-1])}


def _settings(root: Path, name: str, trials: int, workers: int, extra: list[str]):
    from genretune.search.cli.search import settings_from_argv

    argv = ["--name", name, "--storage-path", str(root), "--num-samples", str(trials)]
    argv += ["--max-concurrent", str(workers), "--epochs", str(EPOCHS), "--patience", str(EPOCHS)]
    argv += ["--scheduler", "fifo", "--progress-interval", "60", "--synthetic-scale", "0.02"]
    return settings_from_argv([*argv, *extra])


def run_ray_part(root: Path, trials: int, workers: int, seconds: float) -> dict[str, Any]:
    import ray

    from genretune.search.launch import run_search
    from scaling.standin import launch_with_standin

    if not ray.is_initialized():
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    launch_with_standin(seconds)
    sampler = RssSampler()
    start = time.perf_counter()
    results = run_search(_settings(root, "ray-part", trials, workers, []))
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
        "driver_rss_curve": [
            (round(t), round(r)) for t, r in sampler.samples[:: max(1, len(sampler.samples) // 60)]
        ],
    }


def build_experiment(root: Path, trials: int, workers: int, seconds: float) -> Path:
    """A finished two-objective experiment of `trials` stand-in trials of EPOCHS epochs."""
    from genretune.search.launch import run_search
    from scaling.standin import launch_with_standin

    launch_with_standin(seconds)
    extra = ["--objectives", "val_f1,val_coverage"]
    run_search(_settings(root, "experiment-part", trials, workers, extra))
    return root / "experiment-part"


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
