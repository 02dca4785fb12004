"""The device path: GPU numbers when a GPU is present (or checked on the CPU)."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch

from speed.common import FULL_SHAPE, demo_flat, sync
from speed.flops import step_rates


def device_matmul_peak(device: str, dtype: torch.dtype, n: int, reps: int = 10) -> float:
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    best = 0.0
    for _ in range(reps):
        sync(device)
        began = time.perf_counter()
        a @ b
        sync(device)
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

    cfg = config_from_flat(demo_flat(epochs=epochs, patience=epochs, seed=0))
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
