"""`genretune tune-threshold`: sweep thresholds and top-K on a model's validation predictions,
and report the chosen rules on its test split."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model-dir", type=Path, help="a model dir written by `genretune train`")
    src.add_argument("--predictions", type=Path, help=".npz with y_true (N, G) and y_score (N, G)")
    p.add_argument("--output-dir", type=Path, help="default: the model dir or the npz's dir")
    p.add_argument("--device", default="auto")


def run(args: argparse.Namespace) -> int:
    from genretune.model.artifacts import load_predictions
    from genretune.model.decision import RESULTS_FILE
    from genretune.model.device import resolve_runtime
    from genretune.model.threshold_tuning import TEST_REPORT_FILE, model_dir_predictions, tune
    from genretune.output_files import (
        atomic_outputs,
        check_output_dir,
        check_outside_experiment,
        check_regular_file,
    )
    from genretune.results.experiment_dir import enclosing_experiment

    if args.output_dir is not None:
        out, flag = args.output_dir, "--output-dir"
    elif args.model_dir is not None:
        out, flag = args.model_dir, "--model-dir"
    else:
        out, flag = args.predictions.parent, "--predictions"
    check_outside_experiment(out, flag, enclosing_experiment(out))
    if args.model_dir is not None:
        predictions = model_dir_predictions(args.model_dir, resolve_runtime(args.device))
    else:
        predictions = {"val": load_predictions(args.predictions)}
    check_output_dir(out, "--output-dir")
    for name in (RESULTS_FILE, PLOTS_FILE, TEST_REPORT_FILE):
        check_regular_file(out / name, flag)
    # Written into a staging directory, then renamed into `out` together (other files there,
    # such as a model dir's weights, are left as they are).
    with atomic_outputs() as outputs, outputs.directory(out, flag) as staging:
        sweep, test_report = tune(predictions, staging)
    print("\n".join(tuning_summary(sweep, test_report)))
    print(f"wrote {out / RESULTS_FILE} and {PLOTS_FILE}")
    return 0


PLOTS_FILE = "threshold_tuning_plots.png"  # written by threshold_tuning.tune


def tuning_summary(sweep: dict[str, Any], test_report: dict[str, Any] | None) -> list[str]:
    from genretune.model.decision import rule_from_best
    from genretune.model.threshold_tuning import STRATEGIES

    lines = [
        f"{'strategy':16s}{'rule':24s}{'val F1':>8s}{'Prec':>7s}{'Recall':>7s}{'Preds':>7s}"
        + ("   test F1" if test_report else "")
    ]
    for strategy in (*STRATEGIES, "overall"):
        best = sweep["best"][strategy]
        if best is None:
            continue
        rule = rule_from_best(best)
        line = (
            f"{strategy:16s}{rule.describe():24s}{best['f1']:8.3f}{best['precision']:7.3f}"
            f"{best['recall']:7.3f}{best['avg_predictions']:7.2f}"
        )
        if test_report and strategy in test_report:
            line += f"{test_report[strategy]['f1']:10.3f}"
        lines.append(line)
    return lines
