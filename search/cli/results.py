"""`genretune results`: an experiment's trials as a table, one trial's curve, a dataframe file,
and plots."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from genretune.data import InputError
from genretune.results.experiment import Experiment, load_experiment

FORMATS = ("table", "csv", "json", "parquet")
CURVE_COLUMNS = [
    "training_iteration",
    "train_loss",
    "val_f1",
    "best_val_f1",
    "val_precision",
    "val_recall",
    "val_avg_predictions",
    "tuned_threshold",
    "tuned_top_k",
    "tuned_val_f1",
    "epochs_since_best",
    "epoch_seconds",
]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("experiment", help="experiment name (under --storage-path) or directory")
    p.add_argument("--storage-path", default="runs")
    p.add_argument("--sort", help="column to sort by (default: the search objective)")
    p.add_argument("--ascending", action="store_true")
    p.add_argument("--filter", help='pandas query, e.g. "base_channels == 16 and epochs > 3"')
    p.add_argument("--columns", help="comma-separated columns to show")
    p.add_argument("--top", type=int, help="show the N first rows")
    p.add_argument("--trial", help="show one trial's learning curve")
    p.add_argument(
        "--format",
        choices=FORMATS,
        help="table (default), csv, json or parquet; with --output, its extension's by default",
    )
    p.add_argument("--output", type=Path, help="write the dataframe to this file")
    p.add_argument(
        "--force", action="store_true", help="replace an existing --output or --plots files"
    )
    p.add_argument("--plots", type=Path, help="write PNG plots into this directory")
    p.add_argument(
        "--pareto",
        action="store_true",
        help="only the non-dominated trials of a multi-objective search, best first",
    )


def _default_columns(exp: Experiment) -> list[str]:
    objective = exp.metric if exp.metric.startswith("best_") else f"best_{exp.metric}"
    cols = [
        "trial_id",
        "status",
        "end_reason",
        "epochs",
        objective,
        "last_val_f1",
        *exp.searched,
        "wall_time_s",
    ]
    return [c for c in dict.fromkeys(cols) if c in exp.trials]


def _select(exp: Experiment, args: argparse.Namespace) -> pd.DataFrame:
    df = exp.trials
    if args.filter:
        try:
            df = df.query(args.filter, engine="python")
        except pd.errors.UndefinedVariableError as exc:
            name = str(exc).split("'")[1] if str(exc).count("'") >= 2 else str(exc)
            raise InputError(
                f"--filter {args.filter!r}: no column {name!r} (a setting the search did not "
                "vary is not a column; `--format csv` shows them all)"
            ) from None
        except Exception as exc:  # pandas raises many types for a bad expression
            raise InputError(f"--filter {args.filter!r}: {type(exc).__name__}: {exc}") from None
    if args.sort is not None:
        if args.sort not in df:
            raise InputError(f"--sort {args.sort}: no such column (see --format csv)")
        df = df.sort_values(args.sort, ascending=args.ascending, na_position="last")
    if args.columns:
        cols = list(dict.fromkeys(c.strip() for c in args.columns.split(",") if c.strip()))
        if not cols:
            raise InputError(f"--columns {args.columns!r}: no column named")
        missing = [c for c in cols if c not in df]
        if missing:
            raise InputError(f"--columns: unknown column(s) {', '.join(missing)}")
        df = df[cols]
    elif args.format == "table":
        df = df[_default_columns(exp)]
    if args.top is not None:
        if args.top < 1:
            raise InputError("--top must be >= 1")
        df = df.head(args.top)
    return df


def _table(df: pd.DataFrame) -> str:
    return df.to_string(index=False, float_format=lambda v: f"{v:.4g}")


def _write(df: pd.DataFrame, fmt: str, output: Path | None) -> None:
    """The dataframe to --output (atomically) or stdout."""
    if output is None:
        _print(df, fmt)
        return
    from genretune.output_files import write_bytes_atomically

    write_bytes_atomically(output, _render(df, fmt), "--output")
    _wrote(output, fmt, df)


def _wrote(output: Path, fmt: str, df: pd.DataFrame) -> None:
    print(f"wrote {output} ({fmt}, {len(df)} rows)", file=sys.stderr)


def _print(df: pd.DataFrame, fmt: str) -> None:
    """The dataframe on stdout."""
    if fmt == "table":
        print(_table(df))
    elif fmt == "csv":
        df.to_csv(sys.stdout, index=False)
    elif fmt == "json":
        print(df.to_json(orient="records", indent=1))
    else:
        raise InputError("--format parquet needs --output FILE")


def _render(df: pd.DataFrame, fmt: str) -> bytes:
    """The dataframe as the bytes of an --output file of format `fmt` (rendered in memory
    first: a write that fails is then an OSError of the file, not of a library)."""
    if fmt == "table":
        return (_table(df) + "\n").encode("utf-8")
    if fmt == "csv":
        return df.to_csv(index=False).encode("utf-8")
    if fmt == "json":
        return df.to_json(orient="records", indent=1).encode("utf-8")
    import io

    buffer = io.BytesIO()
    try:
        df.to_parquet(buffer, index=False)
    except ImportError:
        raise InputError(
            "--format parquet needs pyarrow: pip install 'genretune[parquet]'"
        ) from None
    return buffer.getvalue()


def _with_trials(exp, trials):
    from dataclasses import replace

    return replace(exp, trials=trials)


EXTENSION_FORMATS = {".csv": "csv", ".json": "json", ".parquet": "parquet", ".pq": "parquet"}


def output_format(args: argparse.Namespace) -> str:
    """--format, else the one --output's extension names, else table; a --format that the
    extension contradicts is refused."""
    named = EXTENSION_FORMATS.get(args.output.suffix.lower()) if args.output else None
    if args.format and named and args.format != named:
        raise InputError(f"--output {args.output}: a {named} file, but --format {args.format}")
    return args.format or named or "table"


def run(args: argparse.Namespace) -> int:
    from genretune.output_files import (
        check_output_dir,
        check_output_file,
        check_outside_experiment,
        check_regular_file,
    )
    from genretune.results.experiment_dir import enclosing_experiment

    args.format = output_format(args)
    if args.trial:
        curve_only = [
            f"--{k}" for k in ("filter", "sort", "columns", "top") if getattr(args, k) is not None
        ] + (["--pareto"] if args.pareto else [])
        if curve_only:
            raise InputError(
                f"--trial shows one trial's curve: {', '.join(curve_only)} do not apply"
            )

    # No output inside an experiment (its own files are the search's alone), none over a
    # device or FIFO: checked before the experiment is read.
    for target, flag in ((args.output, "--output"), (args.plots, "--plots")):
        if target is not None:
            check_outside_experiment(target, flag, enclosing_experiment(target))
    if args.output:
        check_output_file(args.output, "--output", args.force)
    if args.plots:
        check_output_dir(args.plots, "--plots")
    exp = load_experiment(args.experiment, args.storage_path)
    if args.plots and not args.trial:
        from genretune.results.plots import plot_files

        for name in plot_files(exp):
            check_regular_file(args.plots / name, "--plots")
        there = [f for f in plot_files(exp) if (args.plots / f).exists()]
        if there and not args.force:
            raise InputError(
                f"--plots {args.plots}: holds {', '.join(there)} already (--force replaces them)"
            )
    from genretune.results.pareto import objective_table, objectives_of

    if args.plots and not args.trial and len(objectives_of(exp)) >= 2:
        objective_table(exp)  # the study can be read: checked before anything is written
    if args.trial:
        exp.trial(args.trial)
        curve = exp.history[exp.history["trial_id"] == args.trial]
        cols = [c for c in CURVE_COLUMNS if c in curve]
        _write(curve[cols], args.format, args.output)
        return 0
    full = exp
    header = f"{exp.path}: {len(exp.trials)} trials, objective {exp.metric} ({exp.mode})"
    if args.pareto:
        from genretune.results.pareto import pareto_front

        front = pareto_front(exp)
        objectives = [f"{m} ({mode})" for m, mode in exp.settings["objectives"]]
        header = (
            f"{exp.path}: Pareto front, {len(front)} of {len(exp.trials)} trials; objectives "
            f"{', '.join(objectives)}"
        )
        exp = _with_trials(exp, front)
        if not args.columns and args.format == "table":
            metrics = [m for m, _ in full.settings["objectives"]]
            args.columns = ",".join(["trial_id", *metrics, *exp.searched, "epochs"])
    df = _select(exp, args)
    if args.format == "table" and not args.output:
        print(header)
    if df.empty and args.format == "table" and args.filter and not args.output:
        print(f"no trial matches --filter {args.filter!r}")
        df = None
    if df is not None and not args.output:
        _print(df, args.format)
    if not args.plots:
        if df is not None and args.output:
            _write(df, args.format, args.output)
        return 0
    from genretune.output_files import atomic_outputs
    from genretune.results.plots import write_plots

    # The table file and the plots are renamed into place together, or none of them.
    with atomic_outputs() as outputs:
        if df is not None and args.output:
            with outputs.file(args.output, "--output") as staged:
                staged.write_bytes(_render(df, args.format))
        plots = write_plots(full, args.plots, outputs=outputs)
    if df is not None and args.output:
        _wrote(args.output, args.format, df)
    for path in plots:
        print(f"wrote {path}")
    return 0
