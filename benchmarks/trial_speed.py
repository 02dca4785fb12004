"""Trial speed: Ray trial vs `genretune train` throughput, search overhead, CPU FLOP/s against
this machine's matmul peak and where a step's time goes, cost growth with data scale and width,
and trial memory.

    python benchmarks/trial_speed.py            # about 12 minutes on 2 cores
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

import numpy as np  # noqa: E402
import torch  # noqa: E402

DEMO_SHAPE, FULL_SHAPE = (32, 64), (64, 128)


def _demo_flat(**overrides) -> dict:
    from genretune.search.profiles import get_profile
    from genretune.search.space import profile_defaults

    return {**profile_defaults(get_profile("demo")), "base_channels": 16, "lr": 5e-4, **overrides}


# -- (1) throughput inside a Ray trial vs `genretune train` -------------------------------------


def _train_samples_per_s(flat: dict, threads: int) -> list[float]:
    from genretune.data import load_dataset
    from genretune.model.config import config_from_flat
    from genretune.model.device import resolve_runtime
    from genretune.model.prepare import prepare_data
    from genretune.model.training import fit

    cfg = config_from_flat(flat)
    prepared = prepare_data(load_dataset(cfg.data), cfg.filter, cfg.loss)
    fitted = fit(prepared, cfg, resolve_runtime("cpu", threads))
    return [h["n_train"] / h["epoch_seconds"] for h in fitted.history]


def _trial_samples_per_s(flat: dict, storage: Path, name: str) -> list[float]:
    from ray import tune

    from genretune.model.config import config_from_flat
    from genretune.search.trainable import dataset_for_trials, train_trial

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
    train, trial, pairs = [], [], []
    for i in range(repeats):  # alternate, so drift hits both sides
        a = _train_samples_per_s(flat, threads=1)[1:]  # skip the warm-up epoch
        b = _trial_samples_per_s(flat, storage, f"speed{i}")[1:]
        train, trial = train + a, trial + b
        pairs.append(statistics.median(b) / statistics.median(a))
    ratio = statistics.median(trial) / statistics.median(train)
    return {
        "train_samples_per_s": statistics.median(train),
        "trial_samples_per_s": statistics.median(trial),
        "ratio": ratio,
        "ratio_per_alternation": pairs,
        "epochs_measured": len(train),
    }


# -- (2) search overhead ----------------------------------------------------------------------


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
    with PeakSampler(_search_pids) as peaks:
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


# How a training step can run: layout, compilation, precision. The trainer runs channels_last
# eager fp32 on CPUs; the others are measured to see what would help.
VARIANTS = {
    "contiguous": {"channels_last": False, "compile": False, "bf16": False},
    "channels_last": {"channels_last": True, "compile": False, "bf16": False},
    "channels_last+compile": {"channels_last": True, "compile": True, "bf16": False},
    "channels_last+bf16": {"channels_last": True, "compile": False, "bf16": True},
}


def _training_step(
    base: int, shape: tuple[int, int], batch: int, variant: str, device: str = "cpu"
):
    """(one training step: forward + backward + AdamW, its model in eager fp32)."""
    from genretune.model.network import GenreCNN

    opts = VARIANTS[variant]
    torch.manual_seed(0)
    model = GenreCNN(n_genres=24, base_channels=base).to(device)
    x = torch.randn(batch, *shape, device=device)  # the model adds the channel dimension
    y = (torch.rand(batch, 24, device=device) < 0.05).float()
    if opts["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    forward = model
    if opts["compile"]:
        torch._dynamo.reset()  # each size compiles afresh, static shapes
        forward = torch.compile(model, dynamic=False)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(torch.device(device).type, torch.bfloat16, enabled=opts["bf16"]):
            logits = forward(x)
        loss_fn(logits.float(), y).backward()
        opt.step()

    return step, model, x, y


def step_flops(base: int, shape: tuple[int, int], batch: int) -> float:
    """FLOPs of one fp32 training step, counted by torch.utils.flop_counter."""
    from torch.utils.flop_counter import FlopCounterMode

    step, *_ = _training_step(base, shape, batch, "contiguous")
    with FlopCounterMode(display=False) as counter:
        step()
    return float(counter.get_total_flops())


def _sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def step_rates(
    base: int,
    shape: tuple[int, int],
    threads: int,
    batch: int,
    rounds: int = 3,
    variants: tuple[str, ...] = tuple(VARIANTS),
    device: str = "cpu",
) -> dict[str, float]:
    """Best-of-`rounds` FLOP/s of each variant, the variants timed in turn within each round so
    that a noisy neighbour slows them alike."""
    torch.set_num_threads(threads)
    flops = step_flops(base, shape, batch)
    steps = {v: _training_step(base, shape, batch, v, device)[0] for v in variants}
    for step in steps.values():  # warm-up, and compilation for the compiled variant
        for _ in range(3):
            step()
    n = max(2, min(20, int(1e10 / max(flops, 1))))
    if torch.device(device).type == "cuda":
        n *= 10
    best = dict.fromkeys(variants, 0.0)
    for _ in range(rounds):
        for variant, step in steps.items():
            _sync(device)
            began = time.perf_counter()
            for _ in range(n):
                step()
            _sync(device)
            best[variant] = max(best[variant], flops * n / (time.perf_counter() - began))
    return {"flops": flops, **best}


def cpu_efficiency(threads: int, bases: list[int], batch: int) -> dict:
    """FLOP/s of each variant over the matmul peak. The peak is re-measured next to every row
    and the highest reading is used for all (the conservative ratio on a noisy machine). The
    trainer's variant is also run on one thread against the one-thread peak: two concurrent
    trials train on one thread each."""
    peaks = {threads: 0.0, 1: 0.0}
    rows = []
    for shape_name, shape in (("demo", DEMO_SHAPE), ("full", FULL_SHAPE)):
        for base in bases:
            peaks[threads] = max(peaks[threads], matmul_peak(threads, reps=5))
            rates = step_rates(base, shape, threads, batch)
            peaks[1] = max(peaks[1], matmul_peak(1, reps=5))
            one = step_rates(base, shape, 1, batch, rounds=2, variants=("channels_last",))
            row = {
                "input": shape_name,
                "shape": list(shape),
                "base_channels": base,
                "gflop_per_step": rates["flops"] / 1e9,
                "one_thread_gflops": one["channels_last"] / 1e9,
            }
            row.update({f"{v}_gflops": rates[v] / 1e9 for v in VARIANTS})
            rows.append(row)
    for row in rows:
        row.update({f"{v}_of_peak": row[f"{v}_gflops"] * 1e9 / peaks[threads] for v in VARIANTS})
        row["one_thread_of_peak"] = row["one_thread_gflops"] * 1e9 / peaks[1]
    return {
        "threads": threads,
        "batch": batch,
        "matmul_peak_gflops": peaks[threads] / 1e9,
        "one_thread_matmul_peak_gflops": peaks[1] / 1e9,
        "rows": rows,
    }


# Profiler op names by kind; a step's self time that matches none of them is "other" (the
# optimizer, zero-fills, the loss, the classifier).
OP_KINDS = {
    "conv": ("convolution",),
    "batch_norm": ("batch_norm",),
    "relu": ("threshold_backward", "relu", "clamp_min"),
    "pool": ("max_pool",),
}


def step_breakdown(base: int, shape: tuple[int, int], threads: int, batch: int) -> dict:
    """Where the trainer's step (channels_last, eager fp32) spends its time, from the profiler's
    self CPU time per op, and the FLOP/s of the convolutions alone: how far fp32 training can
    get towards the matmul peak while batch norm, ReLU and pooling (no counted FLOPs) run."""
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(threads)
    flops = step_flops(base, shape, batch)
    step, *_ = _training_step(base, shape, batch, "channels_last")
    for _ in range(3):
        step()
    n = max(3, min(10, int(3e10 / max(flops, 1))))
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(n):
            step()
    spent = dict.fromkeys([*OP_KINDS, "other"], 0.0)
    for event in prof.key_averages():
        kind = next(
            (k for k, parts in OP_KINDS.items() if any(p in event.key for p in parts)), "other"
        )
        spent[kind] += event.self_cpu_time_total / 1e6
    total = sum(spent.values())
    return {
        "shape": list(shape),
        "base_channels": base,
        "share": {k: v / total for k, v in spent.items()},
        "conv_gflops": flops * n / spent["conv"] / 1e9,
        "step_gflops": flops * n / total / 1e9,
    }


# -- (3b) the device path: GPU numbers when a GPU is present --------------------------------


def device_matmul_peak(device: str, dtype: torch.dtype, n: int, reps: int = 10) -> float:
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    best = 0.0
    for _ in range(reps):
        _sync(device)
        began = time.perf_counter()
        a @ b
        _sync(device)
        best = max(best, 2 * n**3 / (time.perf_counter() - began))
    return best


def resident_vs_streamed(device: str, threads: int, epochs: int = 3) -> dict:
    """Samples/s of whole epochs (the training pass and the validation pass with its decision
    sweep, as a trial runs them), with the feature array resident on the device (one index
    copy per epoch) and with batches streamed from host memory (pinned, read ahead)."""
    from genretune.data import load_dataset
    from genretune.model.config import config_from_flat
    from genretune.model.device import Runtime
    from genretune.model.prepare import prepare_data
    from genretune.model.training import fit

    cfg = config_from_flat(_demo_flat(epochs=epochs, patience=epochs, seed=0))
    prepared = prepare_data(load_dataset(cfg.data), cfg.filter, cfg.loss)
    out = {}
    for resident in (True, False):
        amp = torch.device(device).type == "cuda" and torch.cuda.get_device_capability() >= (8, 0)
        runtime = Runtime(device, amp, True, resident, threads)
        rates = [h["n_train"] / h["epoch_seconds"] for h in fit(prepared, cfg, runtime).history]
        out["resident" if resident else "streamed"] = statistics.median(rates[1:] or rates)
    return out


def gpu_packing(storage: Path, fractions: tuple[float, ...] = (1.0, 0.5, 0.25)) -> list[dict]:
    """Wall time of the same 4-trial search with 1, 2 or 4 trials sharing one GPU, at the full
    profile's input size and model widths (the demo's tiny model would measure Ray's overhead,
    not GPU sharing)."""
    from genretune.search.cli.search import settings_from_argv
    from genretune.search.launch import run_search

    rows = []
    for fraction in fractions:
        argv = ["search", "--name", f"packing_{fraction}", "--storage-path", str(storage)]
        argv += ["--profile", "full", "--synthetic-scale", "0.1", "--no-baseline"]
        argv += ["--num-samples", "4", "--epochs", "3", "--grace-period", "3"]
        argv += ["--gpus-per-trial", str(fraction), "--progress-interval", "100000"]
        began = time.monotonic()
        run_search(settings_from_argv(argv[1:]))
        rows.append({"gpus_per_trial": fraction, "wall_s": time.monotonic() - began})
    return rows


def device_section(device: str, threads: int, bases: list[int], batch: int) -> dict:
    """fp32 and bf16 matmul peaks, training FLOP/s (fp32 and bf16 autocast, channels_last) at
    the full input size, and resident vs streamed data, on `device`."""
    n = 8192 if torch.device(device).type == "cuda" else 2048
    # The trainer lets fp32 matmuls and convolutions use TF32 on a GPU: the fp32 peak is
    # measured the same way (a TF32-free peak would let the ratio pass 100%).
    if torch.device(device).type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    peaks = {
        "fp32": device_matmul_peak(device, torch.float32, n),
        "bf16": device_matmul_peak(device, torch.bfloat16, n),
    }
    variants = ("channels_last", "channels_last+bf16")
    rows = []
    for base in bases:
        rates = step_rates(base, FULL_SHAPE, threads, batch, 2, variants, device)
        rows.append(
            {
                "base_channels": base,
                "fp32_of_fp32_peak": rates["channels_last"] / peaks["fp32"],
                "bf16_of_bf16_peak": rates["channels_last+bf16"] / peaks["bf16"],
                "fp32_gflops": rates["channels_last"] / 1e9,
                "bf16_gflops": rates["channels_last+bf16"] / 1e9,
            }
        )
    return {
        "device": device,
        "name": torch.cuda.get_device_name(device) if "cuda" in device else "cpu",
        "peak_gflops": {k: v / 1e9 for k, v in peaks.items()},
        "rows": rows,
        "samples_per_s": resident_vs_streamed(device, threads),
    }


# -- (4) cost growth ---------------------------------------------------------------------------


def epoch_seconds_estimate(scale: float, base: int, threads: int, batches: int = 15) -> dict:
    """Seconds per training epoch at a data scale, from `batches` timed batches."""
    from genretune.data import load_dataset
    from genretune.model.config import config_from_flat
    from genretune.model.device import FeatureFeeder, resolve_runtime
    from genretune.model.network import GenreCNN
    from genretune.model.prepare import prepare_data

    torch.set_num_threads(threads)
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


def _search_pids() -> set[int]:
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


# -- report --------------------------------------------------------------------------------------


def tables(r: dict) -> str:
    t = r["throughput"]
    o = r["overhead"]
    e = r["cpu_efficiency"]
    lines = [
        "| measure | value | goal |",
        "|---|---|---|",
        f"| samples/s in a Ray trial / in `genretune train` (1 thread, demo config, medians of "
        f"{t['epochs_measured']} epochs per side; per alternation: "
        + ", ".join(f"{x:.2f}" for x in t.get("ratio_per_alternation", []))
        + f") | {t['trial_samples_per_s']:.0f} / {t['train_samples_per_s']:.0f} = "
        f"**{t['ratio']:.3f}** | >= 0.95 |",
        f"| search wall time / (sum of trial time / 2) ({o['trials']} demo-profile trials) | "
        f"{o['wall_s']:.0f}s / {o['sum_trial_s'] / 2:.0f}s = **{o['overhead_ratio']:.2f}** "
        "| <= 1.15 |",
    ]
    if "peak_pss_bytes" in o:
        lines.append(
            f"| peak memory (PSS of driver + every Ray process) of that default-profile search | "
            f"{o['peak_pss_bytes'] / 2**20:.0f} MiB | - |"
        )
    if "memory" in r:
        m = r["memory"]
        spread = ", ".join(f"{g / 2**20:.0f}" for g in m["uss_growth_per_repeat_bytes"])
        lines += [
            f"| trial USS growth / feature growth (scale 0.1 -> 1.0, 2 concurrent trials, "
            f"medians of {m['repeats']} alternating runs; per run: {spread} MiB) | "
            f"{m['uss_growth_bytes'] / 2**20:.0f} MiB / {m['feature_growth_bytes'] / 2**20:.0f} "
            f"MiB = **{m['uss_growth_over_feature_growth']:.3f}** | < 0.10 |",
            f"| private bytes of a trial worker inside the shared object store | "
            f"{m['max_shm_private_bytes'] / 2**20:.1f} MiB | 0 (features shared) |",
            f"| peak PSS of the trial workers, 2 concurrent (scale 1.0) | "
            f"{m['workers_total_pss_peak_scale_1'] / 2**20:.0f} MiB | - |",
        ]
    lines += [
        "",
        f"Training FLOP/s (forward + backward + AdamW, batch {e['batch']}, best of interleaved "
        f"rounds) over the measured fp32 matmul peak ({e['threads']} threads: "
        f"{e['matmul_peak_gflops']:.1f} GFLOP/s; 1 thread: "
        f"{e['one_thread_matmul_peak_gflops']:.1f}). The trainer runs channels_last eager fp32; "
        "bf16 is not fp32 work and does not count toward the goal:",
        "",
        "| input | base channels | GFLOP/step | "
        + " | ".join(f"{v}, {e['threads']} threads" for v in VARIANTS)
        + " | channels_last, 1 thread |",
        "|---|---|---|" + "---|" * (len(VARIANTS) + 1),
    ]
    for row in e["rows"]:
        cells = " | ".join(
            f"{row[f'{v}_gflops']:.1f} ({row[f'{v}_of_peak']:.0%})"
            for v in (*VARIANTS, "one_thread")
        )
        lines.append(
            f"| {row['input']} {row['shape'][0]}x{row['shape'][1]} | {row['base_channels']} | "
            f"{row['gflop_per_step']:.2f} | {cells} |"
        )
    if "step_breakdown" in r:
        peak = e["matmul_peak_gflops"]
        kinds = [*OP_KINDS, "other"]
        lines += [
            "",
            f"Where a channels_last fp32 step's time goes ({e['threads']} threads, profiler self "
            "time), and the convolutions' own FLOP/s over the matmul peak:",
            "",
            "| input | base channels | " + " | ".join(kinds) + " | convolutions alone |",
            "|---|---|" + "---|" * (len(kinds) + 1),
        ]
        for b in r["step_breakdown"]:
            shares = " | ".join(f"{b['share'][k]:.0%}" for k in kinds)
            lines.append(
                f"| {b['shape'][0]}x{b['shape'][1]} | {b['base_channels']} | {shares} | "
                f"{b['conv_gflops']:.0f} GFLOP/s ({b['conv_gflops'] / peak:.0%}) |"
            )
    if "device" in r:
        d = r["device"]
        pk = d["peak_gflops"]
        lines += [
            "",
            f"Device path on {d['name']} ({d['device']}): matmul peak fp32 (TF32 allowed, as "
            f"in training) {pk['fp32']:.0f}, bf16 {pk['bf16']:.0f} GFLOP/s; training steps at "
            "64x128, channels_last:",
            "",
            "| base channels | fp32 GFLOP/s (of fp32 peak) | bf16 autocast (of bf16 peak) |",
            "|---|---|---|",
        ]
        for row in d["rows"]:
            lines.append(
                f"| {row['base_channels']} | {row['fp32_gflops']:.0f} "
                f"({row['fp32_of_fp32_peak']:.0%}) | {row['bf16_gflops']:.0f} "
                f"({row['bf16_of_bf16_peak']:.0%}) |"
            )
        s = d["samples_per_s"]
        lines += [
            "",
            f"Demo epochs (training and validation pass): {s['resident']:.0f} samples/s with "
            f"the features resident on the device, {s['streamed']:.0f} with batches streamed "
            "from host memory.",
        ]
    if "gpu_packing" in r:
        cells = ", ".join(
            f"{p['gpus_per_trial']} GPU/trial {p['wall_s']:.0f}s" for p in r["gpu_packing"]
        )
        lines += ["", f"The same 4-trial full-profile search on one GPU: {cells}."]
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
        for key, style in zip(VARIANTS, ("--", "-", "-.", ":"), strict=True):
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
