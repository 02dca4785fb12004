"""`genretune predict` speed and memory: tracks per second and peak memory (RSS) of the command,
for feature input (memory-mapped .npy at FMA's 128 x 1280 log-mels, several sizes: the memory
must not grow with the input) and for audio input (30 s MP3 clips decoded as prepare-fma does),
on the CPU and, when one is present, on a GPU.

    python benchmarks/predict_speed.py                 # about 10 minutes on 2 CPU cores
    python benchmarks/predict_speed.py --tracks 256 --clips 16   # a quick look

Writes benchmarks/results/predict_speed.json and .png (with the command line and the commit)
and prints a table. Each measurement is one `genretune predict` process; its peak RSS is the
kernel's high-water mark of that process's own memory (VmHWM).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from provenance import provenance

RESULTS = Path(__file__).resolve().parent / "results"
GENRETUNE = str(Path(sys.executable).with_name("genretune"))
SHAPE = (128, 1280)  # prepare-fma's default: 128 mel bands x 1280 hops of 512 at 22,050 Hz
N_GENRES = 8


# The command run as its console script runs it, reporting its peak resident memory when it
# ends: the kernel's VmHWM of its own address space. (The maximum RSS that wait4 or getrusage
# report counts the parent's memory at the fork too: it grew with the arrays this script made.)
_MEASURED = (
    "import sys\n"
    "from genretune.search.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
    "import resource\n"
    "workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
    "print(f'peak-kb {hwm} {workers}', file=sys.stderr)\n"
    "sys.exit(code)\n"
)


def _run(argv: list[str]) -> tuple[float, float, float]:
    """(seconds, peak RSS in MB, the largest peak RSS of its worker processes in MB: 0 when it
    started none) of `genretune ARGV...` in a process of its own."""
    start = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", _MEASURED, *argv[1:]], capture_output=True,
                         text=True)  # fmt: skip
    seconds = time.perf_counter() - start
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{res.stderr[-2000:]}")
    peak = [line for line in res.stderr.splitlines() if line.startswith("peak-kb ")][-1].split()
    return seconds, int(peak[1]) / 1024, int(peak[2]) / 1024


def _model(root: Path, base_channels: int) -> Path:
    """A model dir at FMA's input shape, trained one epoch on random features whose feature
    dir says it was prepared with prepare-fma's default settings (so it takes audio)."""
    from genretune.data.audio import MelSpec

    data = root / "train"
    data.mkdir()
    rng = np.random.default_rng(0)
    n = 96
    labels = np.zeros((n, N_GENRES), np.uint8)
    labels[np.arange(n), rng.integers(0, N_GENRES, n)] = 1
    np.save(data / "features.npy", rng.normal(-40, 10, (n, *SHAPE)).astype(np.float16))
    np.save(data / "labels_multilabel.npy", labels)
    (data / "genres.json").write_text(json.dumps([f"genre {g}" for g in range(N_GENRES)]))
    np.save(data / "split.npy", (np.arange(n) % 5 // 3 + np.arange(n) % 5 // 4).astype(np.int8))
    (data / "prepare.json").write_text(json.dumps({"identity": {"mel": MelSpec().to_json()}}))
    argv = [GENRETUNE, "train", "--data", str(data), "--epochs", "1", "--no-progress"]
    argv += ["--base-channels", str(base_channels), "--output-dir", str(root / "models")]
    argv += ["--min-samples-per-genre", "1", "--device", "cpu"]
    _run(argv)
    return next((root / "models").iterdir())


def _features(path: Path, n: int) -> Path:
    """A float16 .npy of n tracks, written block by block (never whole in memory)."""
    rng = np.random.default_rng(n)
    out = np.lib.format.open_memmap(path, "w+", np.float16, (n, *SHAPE))
    for start in range(0, n, 256):
        stop = min(n, start + 256)
        out[start:stop] = rng.normal(-40, 10, (stop - start, *SHAPE)).astype(np.float16)
    out.flush()
    del out
    return path


def _clips(directory: Path, n: int, seconds: float = 30.0, rate: int = 44100) -> Path:
    """n MP3 clips like FMA's (30 s, 44.1 kHz stereo): tones in noise."""
    import soundfile as sf

    rng = np.random.default_rng(1)
    directory.mkdir()
    t = np.arange(int(seconds * rate)) / rate
    for i in range(n):
        tone = 0.3 * np.sin(2 * np.pi * (220 + 40 * (i % 9)) * t)
        mono = tone + 0.05 * rng.standard_normal(len(t))
        sf.write(directory / f"{i:04d}.mp3", np.stack([mono, mono], 1).astype(np.float32), rate)
    return directory


def _predict(model: Path, source: list[str], out: Path, device: str) -> tuple[float, ...]:
    out.unlink(missing_ok=True)
    argv = [GENRETUNE, "predict", "--model-dir", str(model), *source, "-o", str(out)]
    return _run([*argv, "--device", device])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", default="64,512,2048", help="feature-input sizes")
    parser.add_argument("--clips", type=int, default=64, help="audio clips")
    parser.add_argument("--base-channels", type=int, default=16)
    parser.add_argument("--batch-sizes", default="64,16", help="--batch-size values to measure")
    parser.add_argument("--workers", type=int, default=2, help="audio decoding processes")
    parser.add_argument("--json", type=Path, default=RESULTS / "predict_speed.json")
    args = parser.parse_args()
    import torch

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    result: dict = {
        "provenance": provenance(),
        "cpus": os.cpu_count(),
        "input_shape": list(SHAPE),
        "base_channels": args.base_channels,
        "features": [],
        "audio": [],
    }
    with tempfile.TemporaryDirectory(prefix="predict-speed-") as tmp:
        root = Path(tmp)
        print(f"training a model at {SHAPE[0]}x{SHAPE[1]} (one epoch)...", flush=True)
        model = _model(root, args.base_channels)
        for n in (int(x) for x in args.tracks.split(",")):
            path = _features(root / f"x{n}.npy", n)
            for device in devices:
                for batch in (int(x) for x in args.batch_sizes.split(",")):
                    source = ["--features", str(path), "--batch-size", str(batch)]
                    seconds, rss, _ = _predict(model, source, root / "o.csv", device)
                    row = {
                        "device": device,
                        "batch_size": batch,
                        "tracks": n,
                        "seconds": round(seconds, 2),
                        "tracks_per_s": round(n / seconds, 1),
                        "peak_rss_mb": round(rss),
                        "input_mb": round(path.stat().st_size / 2**20),
                    }
                    result["features"].append(row)
                    print(_line("features", row), flush=True)
            path.unlink()
        clips = _clips(root / "clips", args.clips)
        for device in devices:
            source = ["--audio", str(clips), "--workers", str(args.workers)]
            seconds, rss, workers_rss = _predict(model, source, root / "o.csv", device)
            row = {
                "device": device,
                "workers": args.workers,
                "tracks": args.clips,
                "seconds": round(seconds, 2),
                "tracks_per_s": round(args.clips / seconds, 2),
                "peak_rss_mb": round(rss),
                "worker_peak_rss_mb": round(workers_rss),
            }
            result["audio"].append(row)
            print(_line("audio (30 s MP3 clips)", row), flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    _plot(result, args.json.with_suffix(".png"))
    print(f"wrote {args.json} and {args.json.with_suffix('.png')}")
    return 0


def _line(what: str, row: dict) -> str:
    keys = ("batch_size", "workers", "input_mb", "worker_peak_rss_mb")
    extra = {k: v for k, v in row.items() if k in keys}
    return (
        f"{what} on {row['device']}: {row['tracks']} tracks in {row['seconds']} s = "
        f"{row['tracks_per_s']} tracks/s, peak RSS {row['peak_rss_mb']} MB {extra}"
    )


def _plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (speed, memory) = plt.subplots(1, 2, figsize=(10, 4))
    for key in sorted({(r["device"], r["batch_size"]) for r in result["features"]}):
        rows = [r for r in result["features"] if (r["device"], r["batch_size"]) == key]
        n = [r["tracks"] for r in rows]
        label = f"{key[0]}, batch {key[1]}"
        speed.plot(n, [r["tracks_per_s"] for r in rows], "o-", label=f"features, {label}")
        memory.plot(n, [r["peak_rss_mb"] for r in rows], "o-", label=f"peak RSS, {label}")
    memory.plot(n, [r["input_mb"] for r in rows], "k--", label="input file size")
    for row in result["audio"]:
        speed.axhline(row["tracks_per_s"], ls=":", label=f"audio (30 s MP3), {row['device']}")
    speed.set(xscale="log", xlabel="tracks", ylabel="tracks / s", title="genretune predict speed")
    memory.set(xscale="log", xlabel="tracks", ylabel="MB", title="memory (feature input)")
    speed.legend()
    memory.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    sys.exit(main())
