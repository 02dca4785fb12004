"""`genretune export`: a trial's complete config (and optionally its best weights as a model dir)
for `genretune train --config`."""

from __future__ import annotations

import argparse
from pathlib import Path

from genretune.data import InputError, first_line
from genretune.results.experiment import load_experiment


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("experiment", help="experiment name (under --storage-path) or directory")
    p.add_argument("--storage-path", default="runs")
    p.add_argument("-o", "--output", type=Path, default=Path("best.json"))
    p.add_argument("--metric", help="choose the best trial by this metric (default: the search's)")
    p.add_argument(
        "--mode",
        choices=("max", "min"),
        help="with --metric: better high or low (default: min for a loss, else max)",
    )
    p.add_argument("--trial", help="export this trial instead of the best")
    p.add_argument(
        "--with-checkpoint",
        type=Path,
        metavar="DIR",
        help="also write the trial's best weights as a model dir",
    )
    p.add_argument("--force", action="store_true", help="replace existing outputs")
    p.add_argument(
        "--pareto",
        action="store_true",
        help="choose among the Pareto front of a multi-objective search: the best by the "
        "first objective, of the front trials that satisfy --where",
    )
    p.add_argument(
        "--where",
        metavar="EXPR",
        help='with --pareto: a pandas query over the front, e.g. "val_coverage >= 0.7"',
    )


def _pareto_choice(exp, where: str | None):
    """The best front trial by the first objective among those satisfying `where`."""
    import pandas as pd

    from genretune.results.pareto import pareto_front

    front = pareto_front(exp)
    if where:
        try:
            # No variables: `@name` in the expression names nothing of the exporter's.
            mask = front.eval(where, engine="python", local_dict={}, global_dict={})
        except Exception as exc:  # pandas raises many types for a bad expression
            raise InputError(
                f"--where {where!r}: {type(exc).__name__}: {first_line(exc)}"
            ) from None
        if not (isinstance(mask, pd.Series) and pd.api.types.is_bool_dtype(mask)):
            raise InputError(
                f"--where {where!r}: not a condition on the front's columns "
                '(e.g. "val_coverage >= 0.7")'
            )
        front = front[mask]
        if front.empty:
            raise InputError(f"--where {where!r}: no trial on the Pareto front satisfies it")
    return front.iloc[0]  # the front is sorted best first by the first objective


EXPORTED_FILES = ("model.pt", "config.json")  # what --with-checkpoint writes (write_model_dir)


def run(args: argparse.Namespace) -> int:
    import json

    from genretune.output_files import (
        atomic_outputs,
        check_output_dir,
        check_output_file,
        check_outside_experiment,
        check_regular_file,
    )
    from genretune.results.experiment_dir import enclosing_experiment
    from genretune.results.export import chosen_trial, export_payload, write_model_dir

    check_outside_experiment(args.output, "-o", enclosing_experiment(args.output))
    if args.with_checkpoint:
        check_outside_experiment(
            args.with_checkpoint, "--with-checkpoint", enclosing_experiment(args.with_checkpoint)
        )
    check_output_file(args.output, "-o", args.force)
    if args.with_checkpoint:
        if args.with_checkpoint.exists() and not args.force:
            raise InputError(
                f"--with-checkpoint {args.with_checkpoint}: already exists (use --force to "
                "replace it)"
            )
        check_output_dir(args.with_checkpoint, "--with-checkpoint")
        if args.with_checkpoint.is_dir():
            # --force replaces an export; a model dir with a test report or other files would
            # be left describing another model.
            others = sorted(
                p.name for p in args.with_checkpoint.iterdir() if p.name not in EXPORTED_FILES
            )
            if others:
                listed = ", ".join(others[:4]) + (", ..." if len(others) > 4 else "")
                raise InputError(
                    f"--with-checkpoint {args.with_checkpoint}: holds files an export would not "
                    f"replace ({listed}): use a new or empty directory"
                )
            for name in EXPORTED_FILES:
                check_regular_file(args.with_checkpoint / name, "--with-checkpoint")
    exp = load_experiment(args.experiment, args.storage_path)
    metric = args.metric or exp.metric
    if args.where is not None and not args.where.strip():
        raise InputError('--where: empty (give a condition such as "val_coverage >= 0.7")')
    if args.where and not args.pareto:
        raise InputError("--where needs --pareto")
    if args.pareto:
        if args.trial or args.metric or args.mode:
            raise InputError("--pareto chooses the trial: drop --trial/--metric/--mode")
        row = _pareto_choice(exp, args.where)
    else:
        row = chosen_trial(exp, args.trial, metric, args.mode)
    payload = export_payload(exp, row, metric)
    if args.pareto:
        objectives = ", ".join(m for m, _ in exp.settings["objectives"])
        payload["provenance"]["selected_by"] = (
            f"Pareto front over {objectives}, best by the first"
            + (f", where {args.where}" if args.where else "")
        )
    # All or nothing: the model dir and the config are staged, then renamed into place together.
    with atomic_outputs() as outputs:
        model_dir = (
            write_model_dir(exp, payload, args.with_checkpoint, outputs)
            if args.with_checkpoint
            else None
        )
        with outputs.file(args.output, "-o") as staged:
            staged.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print(f"trial {row['trial_id']} ({metric} = {row.get(metric, row.get('best_' + metric))})")
    print(f"wrote {args.output}: genretune train --config {args.output}")
    if model_dir:
        print(f"wrote {model_dir}: genretune tune-threshold --model-dir {model_dir}")
    return 0
