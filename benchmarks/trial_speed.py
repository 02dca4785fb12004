"""Trial speed: Ray trial vs `genretune train` throughput, search overhead, CPU FLOP/s against
this machine's matmul peak and where a step's time goes, cost growth with data scale and width,
and trial memory.

    python benchmarks/trial_speed.py            # about 12 minutes on 2 cores
    python benchmarks/trial_speed.py --quick    # fewer repetitions and sizes

Writes benchmarks/results/trial_speed.json, .md and .png and prints the tables. Every ratio is
measured side by side in this one run (the two sides alternate), so machine noise affects both.
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from provenance import provenance
from speed.common import DEMO_SHAPE, FULL_SHAPE
from speed.device import device_section, gpu_packing
from speed.flops import cpu_efficiency, step_breakdown
from speed.growth import epoch_seconds_estimate
from speed.memory import memory
from speed.overhead import search_overhead
from speed.report import plot, tables
from speed.throughput import throughput

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--device-section",
        metavar="DEVICE",
        help="run the device-path section on DEVICE (default: cuda when a GPU is present, "
        "else skipped; 'cpu' checks the section itself)",
    )
    args = parser.parse_args()
    threads = os.cpu_count() or 1
    gpu = torch.cuda.is_available()
    device = args.device_section or ("cuda" if gpu else None)
    import ray

    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    began = time.monotonic()

    def log(text: str) -> None:
        print(f"[{time.monotonic() - began:6.0f}s] {text}", file=sys.stderr, flush=True)

    r: dict = {"threads": threads, "torch": torch.__version__, "gpu": torch.cuda.is_available()}
    with tempfile.TemporaryDirectory(prefix="genretune-speed-") as storage:
        log("throughput: Ray trial vs genretune train")
        r["throughput"] = throughput(Path(storage), repeats=1 if args.quick else 6, epochs=4)
        log("search overhead")
        r["overhead"] = search_overhead(Path(storage), 2 if args.quick else 6)
        if not args.quick:
            log("memory of 2 concurrent trials")
            r["memory"] = memory(Path(storage), repeats=4)
        if gpu and not args.quick:
            log("fractional-GPU packing")
            r["gpu_packing"] = gpu_packing(Path(storage))
    ray.shutdown()
    log("FLOP/s vs matmul peak")
    bases = [16, 32] if args.quick else [16, 32, 64, 128]
    from genretune.search.profiles import get_profile

    batch = get_profile("demo").batch_size  # what a demo trial trains with
    r["cpu_efficiency"] = cpu_efficiency(threads, bases, batch)
    log("where a training step's time goes")
    r["step_breakdown"] = [
        step_breakdown(base, shape, threads, batch)
        for shape in (DEMO_SHAPE, FULL_SHAPE)
        for base in [b for b in bases if b >= 64] or bases[-1:]
    ]
    if device:
        log(f"device path on {device}")
        r["device"] = device_section(device, threads, bases, batch)
    log("cost growth")
    scales = [0.1, 0.25] if args.quick else [0.1, 0.25, 0.5, 1.0]
    r["cost_growth"] = [
        epoch_seconds_estimate(s, b, threads)
        for b in ([8, 16] if args.quick else [8, 16, 32])
        for s in scales
    ]
    r["wall_s"] = time.monotonic() - began
    r = {"provenance": provenance(), **r}
    text = tables(r)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "trial_speed.json").write_text(json.dumps(r, indent=1))
    (args.out / "trial_speed.md").write_text(text + "\n")
    plot(r, args.out / "trial_speed.png")
    print(f"wrote {args.out / 'trial_speed.json'}, .md and .png ({r['wall_s']:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
