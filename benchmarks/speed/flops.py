"""Training FLOP/s against this machine's measured matmul peak, and where a step's time goes."""

from __future__ import annotations

import time

import torch

from speed.common import DEMO_SHAPE, FULL_SHAPE, sync


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
            sync(device)
            began = time.perf_counter()
            for _ in range(n):
                step()
            sync(device)
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
