"""Record the learning-curve bank that benchmarks/simulate.py replays searches against.

The demo problem exactly as `genretune search --profile demo` trains it (synthetic data at
scale 0.1, data seed 0, the demo's input size and base config, one torch thread per run as a
demo trial has), every epoch up to the demo's 15 with no early stopping, through the same
training loop (`model.training.fit`) and runtime a trial uses. Configurations of the training
knobs of the default search space:

  - a scrambled Sobol design over the space's own distributions (log scale where it is log);
  - the hand-tuned baseline configuration, and configurations drawn around it;
  - a subset (the baseline among it) repeated with further training seeds: the noise.

Each epoch, the model's validation and test probabilities are scored under every decision rule
of the bank (hposim/bank.py RULES) in the original label space; the run's own rule (threshold
0.5) and the tuned rule are checked against the metrics the training loop reported.

    python benchmarks/curve_bank.py              # the full bank (about 1.5 h on 2 cores)
    python benchmarks/curve_bank.py --sobol 8 --near 2 --repeat 2 --epochs 3 \\
        --out /tmp/tiny_bank.npz                 # a tiny bank (the tests make one like it)
    python benchmarks/curve_bank.py --synthetic-scale 0.05 --data-seed 1 --epochs 24 \\
        --sobol 128 --near 12 --repeat 16 --out benchmarks/data/curve_bank_task2.npz
                                                 # the second task (never used to choose a default)

Runs go to `<out>.parts/` one file each as they finish, so a killed recording continues where it
stopped; the bank file is assembled from them at the end (and the parts removed).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from genretune.output_files import write_text_atomically
from genretune.search.unit_space import from_unit, to_unit
from hposim.bank import (
    DEFAULT_PATH,
    RULES,
    CurveBank,
    rule_f1,
    rule_index,
    training_knobs,
    tuned_rule_index,
)
from hposim.settings import demo_settings

ROOT = Path(__file__).resolve().parents[1]
DESIGN_SEED = 0
NEAR_SD = 0.08  # spread of the configurations around the baseline, in unit coordinates


@dataclass(frozen=True)
class RunSpec:
    run_id: int
    knobs: dict[str, Any]
    train_seed: int
    design: str  # baseline, near or sobol


def design_runs(space, baseline: dict[str, Any], n_sobol: int, n_near: int, n_repeat: int):
    """The runs of the bank, in recording order: the baseline first, then Sobol points, the
    points near the baseline, and the repeats with training seeds 1 and 2."""
    from scipy.stats import qmc

    knobs = training_knobs(space)
    base_knobs = {k: baseline[k] for k in knobs}
    configs: list[tuple[dict[str, Any], str]] = [(base_knobs, "baseline")]
    if n_sobol:
        sobol = qmc.Sobol(d=len(knobs), scramble=True, seed=DESIGN_SEED)
        points = sobol.random(n_sobol)
        configs += [
            ({k: from_unit(space[k], u) for k, u in zip(knobs, p, strict=True)}, "sobol")
            for p in points
        ]
    rng = np.random.default_rng(DESIGN_SEED)
    centre = {k: to_unit(space[k], base_knobs[k]) for k in knobs}
    for _ in range(n_near):
        point = dict(base_knobs)
        for k in knobs:
            if not hasattr(space[k], "choices"):  # categorical knobs keep the baseline's value
                u = float(np.clip(centre[k] + rng.normal(0, NEAR_SD), 0, 1))
                point[k] = from_unit(space[k], min(u, 1 - 1e-9))
        configs.append((point, "near"))
    # Repeats: the baseline, a few near it and Sobol points spread over the design.
    sobol_ids = [i for i, (_, d) in enumerate(configs) if d == "sobol"]
    near_ids = [i for i, (_, d) in enumerate(configs) if d == "near"]
    n_near_rep = min(len(near_ids), max(0, (n_repeat - 1) // 6))
    n_sobol_rep = min(len(sobol_ids), n_repeat - 1 - n_near_rep)
    picks = (
        np.linspace(0, len(sobol_ids) - 1, n_sobol_rep).round().astype(int) if n_sobol_rep else []
    )
    repeated = [0] + near_ids[:n_near_rep] + [sobol_ids[i] for i in picks]
    runs = [RunSpec(i, knobs_, 0, design) for i, (knobs_, design) in enumerate(configs)]
    for seed in (1, 2):
        for i in repeated[:n_repeat]:
            runs.append(RunSpec(len(runs), configs[i][0], seed, configs[i][1]))
    return runs


# --- one run (in a worker process) -------------------------------------------------------------

_WORKER: dict[str, Any] = {}


def _init_worker(base_flat: dict[str, Any]) -> None:
    import torch

    from genretune.data import load_dataset
    from genretune.model.config import config_from_flat

    torch.set_num_threads(1)  # a demo trial's one CPU
    _WORKER["base"] = base_flat
    _WORKER["dataset"] = load_dataset(config_from_flat(base_flat).data)


def record_run(spec: RunSpec, parts: Path) -> dict[str, Any]:
    """Train one run with every epoch scored; written to `parts` as it finishes."""
    import torch

    from genretune.model.config import config_from_flat
    from genretune.model.device import FeatureFeeder, resolve_runtime
    from genretune.model.evaluation import original_space_scores, predict_proba
    from genretune.model.prepare import prepare_data
    from genretune.model.training import EpochReport, build_model, fit

    began = time.perf_counter()
    base = _WORKER["base"]
    # Patience = epochs: nothing stops early; the simulator applies patience to the curves.
    flat = {**base, **spec.knobs, "seed": spec.train_seed, "patience": base["epochs"]}
    cfg = config_from_flat(flat)
    runtime = resolve_runtime("cpu", 1)
    dataset = _WORKER["dataset"]
    prepared = prepare_data(dataset, cfg.filter, cfg.loss)
    feeder = FeatureFeeder(dataset.features, runtime)
    scorer = build_model(cfg, prepared.genre_filter.n_kept).to(memory_format=torch.channels_last)
    allowed = prepared.genre_filter.kept_mask
    truth = {s: dataset.labels[getattr(prepared, f"{s}_idx")] for s in ("val", "test")}
    own_rule = rule_index(cfg.decision.threshold, cfg.decision.top_k)
    rows: dict[str, list] = {k: [] for k in ("val", "test", "tuned", "pr_auc", "secs", "loss")}
    worst = 0.0

    def on_epoch(report: EpochReport) -> None:
        nonlocal worst
        m = report.metrics
        scorer.load_state_dict(report.checkpoint_state()["model"])
        f1 = {}
        for split in ("val", "test"):
            prob = predict_proba(scorer, feeder, getattr(prepared, f"{split}_idx"), runtime)
            f1[split] = rule_f1(truth[split], original_space_scores(prepared, prob), allowed)
        tuned = tuned_rule_index(m["tuned_threshold"], m["tuned_top_k"])
        # The bank must score exactly what the trial reported.
        worst = max(worst, abs(f1["val"][own_rule] - m["val_f1"]))
        worst = max(worst, abs(f1["val"][tuned] - m["tuned_val_f1"]))
        rows["val"].append(f1["val"])
        rows["test"].append(f1["test"])
        rows["tuned"].append(tuned)
        rows["pr_auc"].append(m["val_pr_auc_macro"])
        rows["secs"].append(m["epoch_seconds"])
        rows["loss"].append(m["train_loss"])

    fit(prepared, cfg, runtime, on_epoch=on_epoch)
    if worst > 1e-9:
        raise RuntimeError(f"run {spec.run_id}: bank F1 differs from the trial's by {worst:.3g}")
    part = {
        "val_f1": np.array(rows["val"]),
        "test_f1": np.array(rows["test"]),
        "tuned_rule": np.array(rows["tuned"], dtype=np.int16),
        "val_pr_auc": np.array(rows["pr_auc"]),
        "epoch_seconds": np.array(rows["secs"]),
        "train_loss": np.array(rows["loss"]),
        "n_genres": np.array(prepared.genre_filter.n_kept),
        "spec": np.array(json.dumps(vars(spec))),
        "wall_s": np.array(time.perf_counter() - began),
    }
    path = parts / f"run_{spec.run_id:04d}.npz"
    tmp = parts / f".run_{spec.run_id:04d}.{os.getpid()}.tmp.npz"
    np.savez(tmp, **part)
    tmp.replace(path)
    return {
        "run_id": spec.run_id,
        "best_val": float(part["val_f1"][:, own_rule].max()),
        "wall_s": float(part["wall_s"]),
    }


def _record_star(args):
    return record_run(*args)


# --- assembly ----------------------------------------------------------------------------------


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "describe", "--always", "--dirty", "--abbrev=40"],
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def assemble(runs: list[RunSpec], parts: Path, knobs: tuple[str, ...], genre_counts, settings):
    loaded = []
    for spec in runs:
        with np.load(parts / f"run_{spec.run_id:04d}.npz") as npz:
            loaded.append({k: npz[k] for k in npz.files})
    stack = lambda key: np.stack([p[key] for p in loaded])  # noqa: E731
    wall = sum(float(p["wall_s"]) for p in loaded)
    return CurveBank(
        knob_names=knobs,
        knobs=np.array([[spec.knobs[k] for k in knobs] for spec in runs], dtype=np.float64),
        train_seed=np.array([spec.train_seed for spec in runs]),
        design=np.array([spec.design for spec in runs]),
        val_f1=stack("val_f1"),
        test_f1=stack("test_f1"),
        tuned_rule=stack("tuned_rule"),
        val_pr_auc=stack("val_pr_auc"),
        epoch_seconds=stack("epoch_seconds"),
        train_loss=stack("train_loss"),
        n_genres=stack("n_genres"),
        genre_counts=genre_counts,
        provenance={**settings, "run_seconds_total": round(wall, 1)},
    )


def _earlier_wall_seconds(parts: Path) -> float:
    """Wall time of earlier (killed) sessions of this recording (0 if never saved; a file
    that cannot be read only loses that bookkeeping, so it is said and counted as 0)."""
    path = parts / "wall.json"
    if not path.is_file():
        return 0.0
    try:
        return float(json.loads(path.read_text())["seconds"])
    except (ValueError, KeyError, TypeError):
        print(f"{path}: unreadable; earlier sessions' wall time counted as 0", file=sys.stderr)
        return 0.0


def _save_wall(parts: Path, seconds: float) -> None:
    write_text_atomically(parts / "wall.json", json.dumps({"seconds": seconds}))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=DEFAULT_PATH, help="the bank file (.npz)")
    p.add_argument("--sobol", type=int, default=256, help="Sobol configurations (default 256)")
    p.add_argument("--near", type=int, default=24, help="configurations near the baseline")
    p.add_argument("--repeat", type=int, default=30, help="configurations trained 3 times")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes")
    p.add_argument("--epochs", type=int, help="override the demo's epochs (tiny test banks)")
    p.add_argument("--synthetic-scale", type=float, help="override the demo's data scale")
    p.add_argument("--data-seed", type=int, help="override the demo's data seed (another task)")
    p.add_argument("--n-mels", type=int, help="override the demo's input height")
    p.add_argument("--frames", type=int, help="override the demo's input width")
    args = p.parse_args(argv)
    if args.sobol < 0 or args.near < 0 or args.repeat < 1 or args.workers < 1:
        p.error("--sobol/--near must be >= 0, --repeat and --workers >= 1")

    extra = []
    for flag in ("epochs", "synthetic_scale", "data_seed", "n_mels", "frames"):
        if getattr(args, flag) is not None:
            extra += ["--" + flag.replace("_", "-"), str(getattr(args, flag))]
    s = demo_settings(extra)
    from genretune.data import load_dataset
    from genretune.search.checks import fit_space_to_data

    dataset = load_dataset(s.base.data)  # generated once here, read by every worker
    s = fit_space_to_data(s, dataset)
    knobs = training_knobs(s.space)
    runs = design_runs(s.space, s.baseline, args.sobol, args.near, args.repeat)
    base_flat = s.base.to_flat()
    parts = args.out.with_name(args.out.name + ".parts")
    parts.mkdir(parents=True, exist_ok=True)
    plan = {"runs": [vars(r) for r in runs], "base_config": base_flat}
    plan_file = parts / "plan.json"
    try:
        saved_plan = json.loads(plan_file.read_text()) if plan_file.is_file() else None
    except ValueError:
        print(f"{plan_file}: unreadable; remove {parts} to start over", file=sys.stderr)
        return 2
    if saved_plan is not None and saved_plan != json.loads(json.dumps(plan)):
        print(f"{parts}: holds runs of another design; remove it to start over", file=sys.stderr)
        return 2
    write_text_atomically(plan_file, json.dumps(plan))
    todo = [r for r in runs if not (parts / f"run_{r.run_id:04d}.npz").is_file()]
    done = len(runs) - len(todo)
    print(
        f"curve bank: {len(runs)} runs ({len(runs) - len(todo)} recorded already), "
        f"{s.base.optim.epochs} epochs each, {args.workers} processes -> {args.out}",
        flush=True,
    )
    began, earlier = time.monotonic(), _earlier_wall_seconds(parts)
    if todo:
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(args.workers, initializer=_init_worker, initargs=(base_flat,)) as pool:
            jobs = [(r, parts) for r in todo]
            for n, out in enumerate(pool.imap_unordered(_record_star, jobs), start=1):
                elapsed = time.monotonic() - began
                _save_wall(parts, earlier + elapsed)
                left = elapsed / n * (len(todo) - n)
                print(
                    f"[{done + n}/{len(runs)}] run {out['run_id']}: best val F1 "
                    f"{out['best_val']:.3f} ({out['wall_s']:.0f}s); {elapsed / 60:.1f} min, "
                    f"~{left / 60:.0f} min left",
                    flush=True,
                )
    wall = earlier + time.monotonic() - began  # over every session of a resumed recording
    settings = {
        "code_commit": _git_commit(),
        "recorded": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "wall_seconds": round(wall, 1),
        "workers": args.workers,
        "torch_threads_per_run": 1,
        "profile": s.profile,
        "base_config": base_flat,
        "space": {k: str(s.space[k]) for k in knobs},
        "baseline": {k: s.baseline[k] for k in knobs},
        "design": {
            "sobol": args.sobol,
            "near": args.near,
            "near_sd_unit": NEAR_SD,
            "repeated_configs": args.repeat,
            "repeat_seeds": [1, 2],
            "design_seed": DESIGN_SEED,
        },
        "rules": "threshold 0.30..0.80 step 0.05 x top-K none/3/5/7/10/15/20, then top-K only",
        "n_rules": len(RULES),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
    }
    genre_counts = dataset.labels.sum(axis=0, dtype=np.int64)
    bank = assemble(runs, parts, knobs, genre_counts, settings)
    bank.save(args.out)
    for f in parts.glob("*"):
        f.unlink()
    parts.rmdir()
    size = args.out.stat().st_size / 2**20
    print(f"wrote {args.out} ({bank.n_runs} runs, {size:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
