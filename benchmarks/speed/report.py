"""The measurements as Markdown tables and one figure."""

from __future__ import annotations

from pathlib import Path

from speed.flops import OP_KINDS, VARIANTS


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
