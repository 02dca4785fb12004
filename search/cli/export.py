"""`genretune export`: a trial's complete config (and optionally its best weights as a model dir)
for `genretune train --config`."""

from __future__ import annotations

import argparse
from pathlib import Path

from genretune.data import InputError
from genretune.results.experiment import load_experiment


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("experiment", help="experiment name (under --storage-path) or directory")
    p.add_argument("--storage-path", default="runs")
    p.add_argument("-o", "--output", type=Path, default=Path("best.json"))
    p.add_argument("--metric", help="choose the best trial by this metric (default: the search's)")
    p.add_argument("--mode", choices=("max", "min"))
    p.add_argument("--trial", help="export this trial instead of the best")
    p.add_argument(
        "--with-checkpoint",
        type=Path,
        metavar="DIR",
        help="also write the trial's best weights as a model dir",
    )
    p.add_argument("--force", action="store_true", help="replace existing outputs")


def run(args: argparse.Namespace) -> int:
    import json

    from genretune.data.outputs import check_output_dir, check_output_file
    from genretune.results.export import chosen_trial, export_payload, write_model_dir

    check_output_file(args.output, "-o", args.force)
    if args.with_checkpoint:
        if args.with_checkpoint.exists() and not args.force:
            raise InputError(
                f"--with-checkpoint {args.with_checkpoint}: already exists (use --force to "
                "replace it)"
            )
        check_output_dir(args.with_checkpoint, "--with-checkpoint")
    exp = load_experiment(args.experiment, args.storage_path)
    metric = args.metric or exp.metric
    row = chosen_trial(exp, args.trial, metric, args.mode)
    payload = export_payload(exp, row, metric)
    model_dir = (
        write_model_dir(exp, payload, args.with_checkpoint) if args.with_checkpoint else None
    )
    args.output.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"trial {row['trial_id']} ({metric} = {row.get(metric, row.get('best_' + metric))})")
    print(f"wrote {args.output}: genretune train --config {args.output}")
    if model_dir:
        print(f"wrote {model_dir}: genretune tune-threshold --model-dir {model_dir}")
    return 0
