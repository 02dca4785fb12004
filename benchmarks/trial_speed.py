"""Trial speed: Ray trial vs `genretune train` throughput, search overhead, CPU FLOP/s against
this machine's matmul peak, cost growth with data scale and width, and trial memory.

    python benchmarks/trial_speed.py            # about 10 minutes on 2 cores
    python benchmarks/trial_speed.py --quick    # fewer repetitions and sizes

Writes benchmarks/results/trial_speed.json, .md and .png and prints the tables. Every ratio is
measured side by side in this one run (the two sides alternate), so machine noise affects both.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

DEMO_SHAPE, FULL_SHAPE = (32, 64), (64, 128)


def _demo_flat(**overrides) -> dict:
    from search.command import _profile_defaults

    return {**_profile_defaults("demo"), "base_channels": 16, "lr": 5e-4, **overrides}


# -- (1) throughput inside a Ray trial vs `genretune train` -------------------------------------


def _train_samples_per_s(flat: dict, threads: int) -> list[float]:
    from data import load_dataset
    from model.config import config_from_flat
    from model.device import resolve_runtime
    from model.prepare import prepare_data
    from model.training import fit

    cfg = config_from_flat(flat)
    prepared = prepare_data(load_dataset(cfg.data), cfg.filter, cfg.loss)
    fitted = fit(prepared, cfg, resolve_runtime("cpu", threads))
    return [h["n_train"] / h["epoch_seconds"] for h in fitted.history]


def _trial_samples_per_s(flat: dict, storage: Path, name: str) -> list[float]:
    from ray import tune

    from model.config import config_from_flat
    from search.trainable import dataset_for_trials, train_trial

    cfg = config_from_flat(flat)
    trainable = tune.with_resources(
        tune.with_parameters(train_trial, dataset=dataset_for_trials(cfg.data, False)), {"cpu": 1}
    )
    tuner = tune.Tuner(
        trainable,
        param_space=cfg.to_flat(),
        run_config=tune.RunConfig(name=name, storage_path=str(storage), verbose=0),
    )
    df = tuner.fit()[0].metrics_dataframe
    return list(df["n_train"] / df["epoch_seconds"])


def throughput(storage: Path, repeats: int, epochs: int) -> dict:
    flat = _demo_flat(epochs=epochs, patience=epochs, seed=0)
    train, trial = [], []
    for i in range(repeats):  # alternate, so drift hits both sides
        train += _train_samples_per_s(flat, threads=1)[1:]  # skip the warm-up epoch
        trial += _trial_samples_per_s(flat, storage, f"speed{i}")[1:]
    ratio = statistics.median(trial) / statistics.median(train)
    return {
        "train_samples_per_s": statistics.median(train),
        "trial_samples_per_s": statistics.median(trial),
        "ratio": ratio,
        "epochs_measured": len(train),
    }


# -- (2) search overhead ----------------------------------------------------------------------


def search_overhead(storage: Path, samples: int) -> dict:
    """A demo-profile search (its epochs, patience and ASHA) of `samples` trials."""
    from search.cli import build_parser, explicit_flags
    from search.command import settings_from_args
    from search.launch import run_search

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
    args = build_parser().parse_args(argv)
    settings = settings_from_args(args, explicit_flags(args))
    began = time.monotonic()
    results = run_search(settings)
    wall = time.monotonic() - began
    busy = float(results.get_dataframe()["time_total_s"].sum())
    return {
        "trials": samples,
        "wall_s": wall,
        "sum_trial_s": busy,
        "concurrency": 2,
        "overhead_ratio": wall / (busy / 2),
    }


# -- (3) FLOP/s vs matmul peak -----------------------------------------------------------------


def matmul_peak(threads: int, n: int = 2048, reps: int = 10) -> float:
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(2):
        a @ b
    best = 0.0
    for _ in range(reps):
        began = time.perf_counter()
        a @ b
        best = max(best, 2 * n**3 / (time.perf_counter() - began))
    return best


def step_flops_per_s(
    base: int, shape: tuple[int, int], channels_last: bool, threads: int, batch: int = 16
) -> tuple[float, float]:
    """(FLOPs of one training step, achieved FLOP/s) of forward + backward + Adam step."""
    from torch.utils.flop_counter import FlopCounterMode

    from model.network import GenreCNN

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = GenreCNN(n_genres=24, base_channels=base)
    x = torch.randn(batch, *shape)  # the model adds the channel dimension
    y = (torch.rand(batch, 24) < 0.05).float()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()

    with FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops()
    for _ in range(2):
        step()
    reps = max(3, int(2e10 / max(flops, 1)))
    began = time.perf_counter()
    for _ in range(min(reps, 40)):
        step()
    per_step = (time.perf_counter() - began) / min(reps, 40)
    return flops, flops / per_step


def cpu_efficiency(threads: int, bases: list[int]) -> dict:
    peak = matmul_peak(threads)
    rows = []
    for shape_name, shape in (("demo", DEMO_SHAPE), ("full", FULL_SHAPE)):
        for base in bases:
            row = {"input": shape_name, "shape": list(shape), "base_channels": base}
            for layout in (False, True):
                flops, rate = step_flops_per_s(base, shape, layout, threads)
                key = "channels_last" if layout else "contiguous"
                row[f"{key}_gflops"] = rate / 1e9
                row[f"{key}_of_peak"] = rate / peak
                row["gflop_per_step"] = flops / 1e9
            rows.append(row)
    return {"threads": threads, "matmul_peak_gflops": peak / 1e9, "rows": rows}


# -- (4) cost growth ---------------------------------------------------------------------------


def epoch_seconds_estimate(scale: float, base: int, threads: int, batches: int = 15) -> dict:
    """Seconds per training epoch at a data scale, from `batches` timed batches."""
    from data import load_dataset
    from model.config import config_from_flat
    from model.device import FeatureFeeder, resolve_runtime
    from model.network import GenreCNN
    from model.prepare import prepare_data

    cfg = config_from_flat(_demo_flat(synthetic_scale=scale, base_channels=base))
    prepared = prepare_data(load_dataset(cfg.data), cfg.filter, cfg.loss)
    runtime = resolve_runtime("cpu", threads)
    model = GenreCNN(n_genres=prepared.genre_filter.n_kept, base_channels=base)
    model = model.to(memory_format=torch.channels_last)
    feeder = FeatureFeeder(prepared.dataset.features, runtime)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    bs = cfg.optim.batch_size
    idx = prepared.train_idx
    n_batches = int(np.ceil(len(idx) / bs))
    times = []
    for b in range(min(batches + 2, n_batches)):
        rows = idx[b * bs : (b + 1) * bs]
        began = time.perf_counter()
        x = feeder.batch(rows)
        y = torch.as_tensor(prepared.kept_labels(rows), dtype=torch.float32)
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()
        times.append(time.perf_counter() - began)
    per_batch = statistics.median(times[2:] or times)
    return {
        "scale": scale,
        "base_channels": base,
        "train_tracks": int(len(idx)),
        "epoch_s": per_batch * n_batches,
    }


# -- (5) memory of concurrent trials ------------------------------------------------------------


def _smaps(pid: int) -> dict[str, int]:
    out = {}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
            key, value = line.split(":", 1)
            out[key] = int(value.split()[0]) * 1024
    except (OSError, ValueError):
        return {}
    return {
        "pss": out.get("Pss", 0),
        "uss": out.get("Private_Clean", 0) + out.get("Private_Dirty", 0),
    }


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


def trial_memory(storage: Path, scale: float, name: str) -> dict:
    """Peak USS/PSS per trial worker and of the whole search, 2 concurrent trials."""
    from data import load_dataset
    from model.config import config_from_flat
    from search.cli import build_parser, explicit_flags
    from search.command import settings_from_args
    from search.launch import run_search

    features = load_dataset(config_from_flat(_demo_flat(synthetic_scale=scale)).data).features
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
    args = build_parser().parse_args(argv)
    settings = settings_from_args(args, explicit_flags(args))
    peaks: dict[int, dict[str, int]] = {}
    total_peak = 0
    done = threading.Event()
    earlier = set(_trial_worker_pids())  # idle workers of earlier runs are not this run's trials

    def sample() -> None:
        nonlocal total_peak
        while not done.is_set():
            total = 0
            for pid in set(_trial_worker_pids()) - earlier:
                m = _smaps(pid)
                if m:
                    total += m["pss"]
                    p = peaks.setdefault(pid, {"uss": 0, "pss": 0})
                    p["uss"], p["pss"] = max(p["uss"], m["uss"]), max(p["pss"], m["pss"])
            total_peak = max(total_peak, total)
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    run_search(settings)
    done.set()
    sampler.join()
    return {
        "scale": scale,
        "feature_bytes": int(features.nbytes),
        "worker_peak_uss": sorted(p["uss"] for p in peaks.values()),
        "worker_peak_pss": sorted(p["pss"] for p in peaks.values()),
        "workers_total_pss_peak": total_peak,
    }


def memory(storage: Path) -> dict:
    small = trial_memory(storage, 0.1, "mem_small")
    large = trial_memory(storage, 1.0, "mem_large")
    # Worker processes differ in their baseline; compare the median trial worker of each run.
    growth = statistics.median(large["worker_peak_uss"]) - statistics.median(
        small["worker_peak_uss"]
    )
    extra_features = large["feature_bytes"] - small["feature_bytes"]
    return {
        "small": small,
        "large": large,
        "uss_growth_bytes": growth,
        "feature_growth_bytes": extra_features,
        "uss_growth_over_feature_growth": growth / extra_features,
    }


# -- report --------------------------------------------------------------------------------------


def tables(r: dict) -> str:
    t = r["throughput"]
    o = r["overhead"]
    e = r["cpu_efficiency"]
    lines = [
        "| measure | value | goal |",
        "|---|---|---|",
        f"| samples/s in a Ray trial / in `genretune train` (1 thread, demo config) | "
        f"{t['trial_samples_per_s']:.0f} / {t['train_samples_per_s']:.0f} = **{t['ratio']:.3f}** "
        "| >= 0.95 |",
        f"| search wall time / (sum of trial time / 2) ({o['trials']} demo-profile trials) | "
        f"{o['wall_s']:.0f}s / {o['sum_trial_s'] / 2:.0f}s = **{o['overhead_ratio']:.2f}** "
        "| <= 1.15 |",
    ]
    if "memory" in r:
        m = r["memory"]
        lines.append(
            f"| trial USS growth / feature growth (scale 0.1 -> 1.0, 2 concurrent trials) | "
            f"{m['uss_growth_bytes'] / 2**20:.0f} MiB / {m['feature_growth_bytes'] / 2**20:.0f} "
            f"MiB = **{m['uss_growth_over_feature_growth']:.3f}** | < 0.10 |"
        )
        lines.append(
            f"| peak PSS of the trial workers, 2 concurrent (scale 1.0) | "
            f"{m['large']['workers_total_pss_peak'] / 2**20:.0f} MiB | - |"
        )
    lines += [
        "",
        f"Training FLOP/s (forward + backward + Adam, batch 16, {e['threads']} threads) over the "
        f"measured fp32 matmul peak of {e['matmul_peak_gflops']:.1f} GFLOP/s:",
        "",
        "| input | base channels | GFLOP/step | contiguous | channels_last |",
        "|---|---|---|---|---|",
    ]
    for row in e["rows"]:
        lines.append(
            f"| {row['input']} {row['shape'][0]}x{row['shape'][1]} | {row['base_channels']} | "
            f"{row['gflop_per_step']:.2f} | {row['contiguous_gflops']:.1f} GFLOP/s "
            f"({row['contiguous_of_peak']:.0%}) | {row['channels_last_gflops']:.1f} GFLOP/s "
            f"({row['channels_last_of_peak']:.0%}) |"
        )
    lines += ["", "Seconds per training epoch (estimated from timed batches, demo input):", ""]
    scales = sorted({c["scale"] for c in r["cost_growth"]})
    bases = sorted({c["base_channels"] for c in r["cost_growth"]})
    lines.append("| base channels | " + " | ".join(f"scale {s}" for s in scales) + " |")
    lines.append("|---" * (len(scales) + 1) + "|")
    for base in bases:
        cells = [
            f"{c['epoch_s']:.1f}s"
            for s in scales
            for c in r["cost_growth"]
            if c["scale"] == s and c["base_channels"] == base
        ]
        lines.append(f"| {base} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(r: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for shape in ("demo", "full"):
        rows = [x for x in r["cpu_efficiency"]["rows"] if x["input"] == shape]
        for key, style in (("contiguous", "--"), ("channels_last", "-")):
            left.plot(
                [x["base_channels"] for x in rows],
                [x[f"{key}_of_peak"] for x in rows],
                style,
                marker="o",
                label=f"{shape} {key}",
            )
    left.axhline(0.5, color="grey", lw=0.8)
    left.set_xscale("log", base=2)
    left.set_xlabel("base channels")
    left.set_ylabel("training FLOP/s / matmul peak")
    left.legend(fontsize=8)
    for base in sorted({c["base_channels"] for c in r["cost_growth"]}):
        rows = [c for c in r["cost_growth"] if c["base_channels"] == base]
        right.plot(
            [c["scale"] for c in rows],
            [c["epoch_s"] for c in rows],
            marker="o",
            label=f"base {base}",
        )
    right.set_xlabel("synthetic scale (1.0 = 38,801 labels)")
    right.set_ylabel("seconds per epoch")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    threads = os.cpu_count() or 1
    import ray

    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    began = time.monotonic()

    def log(text: str) -> None:
        print(f"[{time.monotonic() - began:6.0f}s] {text}", file=sys.stderr, flush=True)

    r: dict = {"threads": threads, "torch": torch.__version__, "gpu": torch.cuda.is_available()}
    with tempfile.TemporaryDirectory(prefix="genretune-speed-") as storage:
        log("throughput: Ray trial vs genretune train")
        r["throughput"] = throughput(Path(storage), repeats=1 if args.quick else 2, epochs=4)
        log("search overhead")
        r["overhead"] = search_overhead(Path(storage), 2 if args.quick else 6)
        if not args.quick:
            log("memory of 2 concurrent trials")
            r["memory"] = memory(Path(storage))
    ray.shutdown()
    log("FLOP/s vs matmul peak")
    bases = [16, 32] if args.quick else [16, 32, 64, 128]
    r["cpu_efficiency"] = cpu_efficiency(threads, bases)
    log("cost growth")
    scales = [0.1, 0.25] if args.quick else [0.1, 0.25, 0.5, 1.0]
    r["cost_growth"] = [
        epoch_seconds_estimate(s, b, threads)
        for b in ([8, 16] if args.quick else [8, 16, 32])
        for s in scales
    ]
    r["wall_s"] = time.monotonic() - began
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
