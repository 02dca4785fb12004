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
    from genretune.data.outputs import check_output_dir
    from genretune.model.artifacts import load_predictions
    from genretune.model.device import resolve_runtime
    from genretune.model.threshold_tuning import model_dir_predictions, tune

    if args.model_dir is not None:
        predictions = model_dir_predictions(args.model_dir, resolve_runtime(args.device))
        out = args.output_dir or args.model_dir
    else:
        predictions = {"val": load_predictions(args.predictions)}
        out = args.output_dir or args.predictions.parent
    check_output_dir(out, "--output-dir")
    sweep, test_report = tune(predictions, out)
    print("\n".join(tuning_summary(sweep, test_report)))
    print(f"wrote {out / 'threshold_tuning_results.json'} and threshold_tuning_plots.png")
    return 0


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
