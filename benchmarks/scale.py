"""Scale: a 1,000-trial search on 32 workers, measured part by part.

    python benchmarks/scale.py                        # all parts (about 22 minutes on 2 cores)
    python benchmarks/scale.py --parts searcher --trials 1000

Parts:
  searcher    the default's searcher and scheduler objects driven as the simulator drives them,
              with the SQLite study storage a real search uses, 32 workers, to 1,000 and 3,000
              trials: per-call latency of suggest, on_trial_result and on_trial_complete
              (median, p95, max) as trials accumulate, and driver CPU per trial-epoch.

  ray         a real local Ray with 32 logical CPUs, --ray-trials (1,000) stand-in trials of 15
              epochs of --seconds-per-epoch (2 s) of sleep, with a checkpoint each epoch,
              launched through genretune's own search path (two objectives, val_f1 and
              val_coverage): wall time over the ideal (trials x 15 x 2 s / 32), and the
              driver's resident memory and CPU time against trials so far.
  experiment  the finished two-objective experiment the ray part left (or, run alone, one of
              --experiment-trials stand-in trials built with zero-second epochs, or the one at
              --experiment-dir): seconds of `results`, `export`, `results --pareto`,
              `search --resume` of the finished search and the Python loader, each a process
              of its own as a user runs it.

Writes --json (default benchmarks/results/scale.json, with the command line and the commit),
a .png of each searcher latency against trial count and a _driver.png of the driver's memory
and CPU time against trials.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from provenance import provenance

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="searcher,ray,experiment")
    parser.add_argument("--trials", default="1000,3000", help="searcher part: trial counts")
    parser.add_argument("--workers", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--flags", default="", help="extra genretune search flags (searcher)")
    parser.add_argument("--ray-trials", type=int, default=1000)
    parser.add_argument("--seconds-per-epoch", type=float, default=2.0)
    parser.add_argument("--experiment-trials", type=int, default=1000)
    parser.add_argument("--json", type=Path, default=RESULTS / "scale.json")
    parser.add_argument(
        "--report", type=Path, default=None,
        help="only write the .md report of an existing result file (no run)",
    )  # fmt: skip
    parser.add_argument(
        "--experiment-dir", type=Path, default=None,
        help="experiment part: build the experiment here and keep it; reuse it when it exists",
    )  # fmt: skip
    args = parser.parse_args()
    if args.report:
        out = json.loads(args.report.read_text())
        args.report.with_suffix(".md").write_text(report(out))
        print(f"wrote {args.report.with_suffix('.md')}")
        return 0
    from scaling.searcher import at, run_searcher_part

    out: dict = {"provenance": provenance()}
    if "searcher" in args.parts.split(","):  # noqa: SIM102
        counts = [int(n) for n in args.trials.split(",")]
        result = run_searcher_part(max(counts), args.workers, args.seed, args.flags.split())
        out["searcher_run"] = result
        out["searcher"] = {str(n): at(result, n) for n in counts}
        for n in counts:
            row = out["searcher"][str(n)]
            print(f"at {n} trials: " + ", ".join(
                f"{k} median {v['median']} p95 {v['p95']} max {v['max']}" for k, v in row.items()
            ))  # fmt: skip
        print(f"driver CPU per trial-epoch: {result['driver_cpu_ms_per_trial_epoch']} ms "
              f"({result['trial_epochs']} trial-epochs, {result['wall_s']} s)")  # fmt: skip
    parts = args.parts.split(",")
    if "ray" in parts or "experiment" in parts:
        import tempfile

        from scaling.real import RAY_PART, build_experiment, run_experiment_part, run_ray_part

        with tempfile.TemporaryDirectory(prefix="scale-") as tmp:
            root = Path(tmp)
            if "ray" in parts:
                out["ray"] = run_ray_part(
                    root, args.ray_trials, args.workers, args.seconds_per_epoch
                )
                out["driver_rss_growth_mb"] = (
                    out["ray"]["driver_rss_mb"]["peak_mb"] - out["ray"]["driver_rss_mb"]["start_mb"]
                )
                print(f"ray: {out['ray']['trials']} trials, {args.workers} at once: wall "
                      f"{out['ray']['wall_s']} s, ideal {out['ray']['ideal_s']} s, "
                      f"wall/ideal {out['ray']['wall_over_ideal']}; driver RSS "
                      f"{out['ray']['driver_rss_mb']}")  # fmt: skip
            if "experiment" in parts:
                exp = args.experiment_dir
                if exp is None and "ray" in parts:
                    exp, args.experiment_trials = root / RAY_PART, out["ray"]["trials"]
                elif exp is None or not exp.exists():
                    built_in = exp.parent if exp else root
                    built_in.mkdir(parents=True, exist_ok=True)
                    name = exp.name if exp else "experiment-part"
                    exp = build_experiment(
                        built_in, name, args.experiment_trials, args.workers, 0.0
                    )
                out["experiment"] = run_experiment_part(exp, args.experiment_trials)
                print(f"experiment: {out['experiment']}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=1) + "\n")
    args.json.with_suffix(".md").write_text(report(out))
    if "searcher_run" in out:
        _plot(out, args.json.with_suffix(".png"))
    if "ray" in out:
        _plot_driver(out["ray"], args.json.with_name(args.json.stem + "_driver.png"))
    print(f"wrote {args.json}")
    return 0


COMMANDS = {
    "results_s": "`genretune results NAME`",
    "export_s": "`genretune export NAME -o best.json`",
    "pareto_s": "`genretune results NAME --pareto`",
    "load_s": "`load_experiment(NAME)` in a new Python",
    "resume_s": "`genretune search --resume NAME` of the finished search",
}


def _met(value: float, goal: float) -> str:
    return "met" if value < goal else "**missed**"


def report(out: dict) -> str:
    """The result file as the tables benchmarks/README.md quotes (numbers from the JSON only)."""
    p = out.get("provenance", {})
    lines = [
        "# scale.py results",
        "",
        f"`{' '.join(p.get('argv', []))}` at commit {p.get('commit', '?')[:10]}"
        + (" (with uncommitted changes)" if p.get("dirty") else ""),
        "",
    ]
    if "searcher" in out:
        run = out["searcher_run"]
        lines += ["| trials | call | median | p95 | max | goal |", "|---|---|---|---|---|---|"]
        for n, calls in out["searcher"].items():
            for call, v in calls.items():
                goal = {"1000": 100, "3000": 300}.get(n) if call == "suggest_ms" else None
                verdict = f"p95 < {goal} ms: {_met(v['p95'], goal)}" if goal else ""
                name = call.removesuffix("_ms")
                lines.append(f"| {n} | {name} | {v['median']} ms | {v['p95']} ms | "
                             f"{v['max']} ms | {verdict} |")  # fmt: skip
        lines += [
            "",
            f"Driver CPU per trial-epoch (searcher and scheduler): "
            f"{run['driver_cpu_ms_per_trial_epoch']} ms over {run['trial_epochs']} trial-epochs "
            f"({run['wall_s']} s).",
            "",
        ]
    if "ray" in out:
        r = out["ray"]
        rss = r["driver_rss_mb"]
        lines += [
            f"Ray: {r['trials']} trials ({r['errors']} errors), {r['concurrent']} at once, "
            f"{r['seconds_per_epoch']} s epochs: wall {r['wall_s']} s against an ideal of "
            f"{r['ideal_s']} s = **{r['wall_over_ideal']}x** (goal <= 1.15: "
            f"{_met(r['wall_over_ideal'], 1.1500001)}).",
            "",
            f"Driver RSS: {rss['start_mb']} MB at the start (libraries loaded), peak "
            f"{rss['peak_mb']} MB, growth **{out['driver_rss_growth_mb']} MB** (goal < 300: "
            f"{_met(out['driver_rss_growth_mb'], 300)}).",
            "",
        ]
        curve = r.get("driver_curve", [])
        if len(curve) > 2:
            lines += ["| trials so far | seconds | driver RSS MB | driver CPU s |",
                      "|---|---|---|---|"]  # fmt: skip
            step = max(1, len(curve) // 10)
            for x in [*curve[::step], curve[-1]]:
                lines.append(f"| {x['trials']} | {x['s']} | {x['rss_mb']} | {x['cpu_s']} |")
            lines.append("")
    if "experiment" in out:
        e = out["experiment"]
        lines += [
            f"Experiment of {e['trials']} trials x 15 epochs, two objectives; each command a "
            f"process of its own (Python alone starts in {e['python_start_s']} s):",
            "",
            "| command | seconds | goal |",
            "|---|---|---|",
        ]
        for key, name in COMMANDS.items():
            goal = 10 if key == "resume_s" else 5
            lines.append(f"| {name} | {e[key]} | < {goal}: {_met(e[key], goal)} |")
        lines.append("")
    return "\n".join(lines)


def _plot(out: dict, path: Path) -> None:
    """Each call's latency (median and p95 per window of trials) against trials started."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = out["searcher_run"]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4), sharex=True)
    for ax, (name, windows) in zip(axes, run["curve"].items(), strict=True):
        n = [int(k) for k in windows]
        for stat, style in (("median", "o-"), ("p95", "s--"), ("max", ":")):
            ax.plot(n, [w[stat] for w in windows.values()], style, label=stat, markersize=3)
        ax.set(title=name, xlabel="trials started", ylabel="ms per call")
        ax.legend()
    fig.suptitle(
        f"searcher calls with a SQLite study, {run['workers']} workers "
        f"(driver CPU {run['driver_cpu_ms_per_trial_epoch']} ms per trial-epoch)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def _plot_driver(ray: dict, path: Path) -> None:
    """The driver's resident memory and CPU time over the ray part, against trials so far: a
    straight line is a cost that is linear in trials (constant per trial)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = ray["driver_curve"]
    trials = [x["trials"] for x in curve]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.plot(trials, [x["rss_mb"] for x in curve], "o-", markersize=2)
    left.set(title="driver resident memory", xlabel="trials so far", ylabel="MB")
    right.plot(trials, [x["cpu_s"] for x in curve], "o-", markersize=2)
    right.set(title="driver CPU time (all its threads)", xlabel="trials so far", ylabel="s")
    fig.suptitle(
        f"ray part: {ray['trials']} stand-in trials, {ray['concurrent']} at once, "
        f"wall/ideal {ray['wall_over_ideal']}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    sys.exit(main())
