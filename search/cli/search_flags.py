"""The flags of `genretune search` (docs/search.md explains each)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from genretune.search.algorithms import AUTO
from genretune.search.cli.common import add_data_flags, add_train_flags
from genretune.search.settings import (
    BASELINE_SPREAD,
    CUT_AS_COMPLETE,
    CUT_TRIALS_AS,
    SAMPLERS,
    TPE_STARTUP_TRIALS,
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_data_flags(p)
    add_train_flags(p)
    g = p.add_argument_group("search")
    g.add_argument("--profile", default="demo", help="demo (default; minutes on a CPU) or full")
    g.add_argument("--space", type=Path, help="YAML/JSON file overriding or removing parameters")
    g.add_argument("--num-samples", type=int, help="trials to run")
    g.add_argument(
        "--metric",
        help="reported key to optimise (default best_tuned_val_f1; best_val_f1 with "
        "--decision space)",
    )
    g.add_argument(
        "--mode",
        choices=("max", "min"),
        help="whether --metric is better high or low (default: min for a loss, else max)",
    )
    g.add_argument(
        "--objectives",
        metavar="METRIC[:max|min],...",
        help="search for the trade-off between two or three reported metrics (a Pareto "
        "front), e.g. val_f1,val_coverage; the first (val_f1 or val_f1_macro) picks each "
        "trial's best epoch and drives early stopping",
    )
    g.add_argument(
        "--decision",
        choices=("space", "tuned"),
        help="tuned (the default): each epoch's validation-optimal threshold/top-K rule from "
        "the sweep, optimising best_tuned_val_f1; space (the default with --objectives): "
        "Optuna searches threshold and top-K",
    )
    g.add_argument(
        "--sampler",
        choices=SAMPLERS,
        default="tpe",
        help="Optuna sampler: tpe (default), random (a baseline), nsga2 (several objectives) or "
        "gp (Gaussian-process Bayesian optimisation, after --tpe-startup random trials)",
    )
    g.add_argument(
        "--tpe-startup",
        type=_startup,
        default=TPE_STARTUP_TRIALS,
        metavar="N|auto",
        help="tpe and gp: trials sampled at random before the model proposes; the baseline and "
        f"the draws around it count (default {TPE_STARTUP_TRIALS}; Optuna's own is 10); auto: a "
        "share of the trials the search expects to run",
    )
    g.add_argument(
        "--tpe-multivariate",
        action="store_true",
        help="TPE: model the parameters jointly (Optuna 5's default; genretune's is the "
        "independent TPE, which found better configurations on the search simulator)",
    )
    g.add_argument(
        "--tpe-constant-liar",
        action="store_true",
        help="TPE: treat running trials as poor when proposing (Optuna 5's default; off here: "
        "with many concurrent trials it pushed proposals away from every region being tried)",
    )
    g.add_argument(
        "--scheduler",
        choices=("asha", "fifo"),
        default="asha",
        help="asha (default) stops weak trials early; fifo runs every trial until patience",
    )
    g.add_argument(
        "--no-baseline",
        "--no-seed-point",
        dest="no_baseline",
        action="store_true",
        help="do not evaluate the hand-tuned baseline configuration as the first trial "
        "(every trial comes from the sampler, as in a plain random search)",
    )
    g.add_argument(
        "--baseline",
        type=Path,
        metavar="FILE",
        help="your own baseline configuration (YAML/JSON of parameters, or a `genretune "
        "export` file) instead of the built-in hand-tuned one",
    )
    g.add_argument(
        "--baseline-draws",
        type=int,
        default=0,
        help="trials drawn around the baseline, evaluated right after it (default 0)",
    )
    g.add_argument(
        "--baseline-spread",
        type=float,
        default=BASELINE_SPREAD,
        help="spread of those draws: standard deviation as a share of each parameter's "
        f"range on its own scale (default {BASELINE_SPREAD})",
    )
    g.add_argument(
        "--cut-trials-as",
        choices=CUT_TRIALS_AS,
        default=CUT_AS_COMPLETE,
        help="how Optuna hears of a trial ASHA or the budget cut: complete (Ray's way: its last "
        "value) or pruned (its per-epoch values; TPE ranks it below finished trials)",
    )
    g.add_argument(
        "--budget-epochs",
        type=int,
        help="end the search once its trials have run this many epochs in total",
    )
    g.add_argument("--grace-period", type=int, help="ASHA: epochs before a trial can be cut")
    g.add_argument("--reduction-factor", type=int, help="ASHA reduction factor")
    g.add_argument(
        "--late-cut",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="ASHA: a trial that reached a rung before any other (Ray's ASHA lets it continue "
        "unranked) is ranked again as others approach and reach that rung, and stopped if "
        "below its cutoff (default: on with ASHA and one objective; --no-late-cut: Ray's ASHA)",
    )
    g.add_argument(
        "--ramp-up",
        type=int,
        default=0,
        metavar="N",
        help="run N trials at first and one more for every trial that ends, up to "
        "--max-concurrent: fewer trial-epochs to a good result on a large cluster, more wall "
        "time (default 0: every worker from the start)",
    )
    g.add_argument("--max-failures", type=int, default=2, help="restarts of a failed trial")
    g.add_argument(
        "--progress-interval", type=float, default=30.0, help="seconds between status lines"
    )
    r = p.add_argument_group("cluster and storage")
    r.add_argument("--name", help="experiment name (default search_<timestamp>)")
    r.add_argument("--storage-path", default="runs", help="local/shared path or cloud URI")
    r.add_argument("--resume", metavar="NAME", help="continue the interrupted experiment NAME")
    r.add_argument(
        "--overwrite", action="store_true", help="replace an experiment of the same name"
    )
    r.add_argument(
        "--address",
        default=os.environ.get("RAY_ADDRESS"),
        help="Ray cluster address (default $RAY_ADDRESS; none = start a local Ray)",
    )
    r.add_argument("--cpus-per-trial", type=float, default=1.0)
    r.add_argument(
        "--gpus-per-trial", type=float, default=0.0, help="fractions like 0.25 pack trials on a GPU"
    )
    r.add_argument("--max-concurrent", type=int)
    r.add_argument(
        "--optuna-storage", help="Optuna RDB URL (default: SQLite in the experiment dir)"
    )
    r.add_argument(
        "--data-on-workers",
        action="store_true",
        help="trials memory-map the feature dir themselves (shared storage) instead of "
        "receiving it from the driver",
    )
    r.add_argument("--verbose", action="store_true", help="show Ray's and the trials' logs")
    r.add_argument("--mlflow-uri", help="also log trials to this MLflow tracking URI (extra)")


def _startup(text: str) -> int | str:
    if text == AUTO:
        return AUTO
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or auto, got {text!r}") from None
