"""`genretune search`: turn flags into SearchSettings, run (or resume) the search, and print
the outcome."""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from genretune.data import InputError
from genretune.model.config import config_from_flat
from genretune.results import experiment_dir
from genretune.search import experiment
from genretune.search.algorithms import AUTO, auto_tpe_startup
from genretune.search.cli.common import add_data_flags, add_train_flags, config_flags
from genretune.search.profiles import get_profile
from genretune.search.settings import (
    BASELINE_SPREAD,
    CUT_AS_COMPLETE,
    CUT_TRIALS_AS,
    DECISION_SPACE,
    DECISION_TUNED,
    SAMPLERS,
    TPE_STARTUP_TRIALS,
    Resources,
    SearchSettings,
    settings_from_json,
)
from genretune.search.space import (
    DECISION_KEYS,
    apply_space_file,
    baseline_point,
    default_space,
    draws_around,
    moved_baseline_values,
    profile_defaults,
    read_baseline_file,
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


def parse_objectives(text: str) -> tuple[tuple[str, str], ...]:
    """`METRIC[:max|min],...` -> ((metric, mode), ...), checked against the reported keys."""
    from genretune.model.config import OBJECTIVES
    from genretune.model.metric_keys import REPORTED_METRICS, natural_mode

    objectives = []
    for item in text.split(","):
        metric, _, mode = item.strip().partition(":")
        mode = mode or natural_mode(metric)
        if mode not in ("max", "min"):
            raise InputError(
                f"--objectives {text}: mode of {metric} must be max or min, got {mode!r}"
            )
        if metric not in REPORTED_METRICS:
            raise InputError(f"--objectives {text}: {metric or '(empty)'} is not a reported metric")
        objectives.append((metric, mode))
    if not 2 <= len(objectives) <= 3:
        raise InputError(f"--objectives {text}: give two or three objectives")
    if len({m for m, _ in objectives}) != len(objectives):
        raise InputError(f"--objectives {text}: an objective appears twice")
    first, first_mode = objectives[0]
    usable = [o for o in OBJECTIVES if o != "tuned_val_f1"]
    if first not in usable or first_mode != "max":
        raise InputError(
            f"--objectives {text}: the first objective picks each trial's best epoch: use "
            f"{' or '.join(usable)} (max)"
        )
    return tuple(objectives)


def _baseline_and_draws(args: argparse.Namespace, profile, space, base) -> tuple[dict, tuple]:
    if args.no_baseline:
        if args.baseline is not None or args.baseline_draws:
            raise InputError("--no-baseline cannot be combined with --baseline/--baseline-draws")
        return {}, ()
    if args.baseline_draws < 0:
        raise InputError("--baseline-draws must be >= 0")
    if not 0 < args.baseline_spread <= 1:
        raise InputError("--baseline-spread must be in (0, 1]")
    given = read_baseline_file(args.baseline) if args.baseline is not None else None
    baseline = baseline_point(profile, space, base.to_flat(), given)
    moved = moved_baseline_values(given or {}, baseline)
    if moved:
        print(
            f"note: --baseline {args.baseline}: outside the searched space, the baseline trial "
            f"runs the nearest values: {', '.join(moved)}",
            file=sys.stderr,
        )
    draws = draws_around(space, baseline, args.baseline_draws, base.seed, args.baseline_spread)
    return baseline, tuple(draws)


def settings_from_argv(argv: list[str]) -> SearchSettings:
    """The settings of `genretune search ARGV` (nothing is started): tests and benchmarks."""
    from genretune.search.cli import build_parser

    return settings_from_args(build_parser().parse_args(["search", *argv]))


def settings_from_args(
    args: argparse.Namespace, flags: dict[str, Any] | None = None
) -> SearchSettings:
    flags = config_flags(args) if flags is None else flags
    profile = get_profile(args.profile)
    # Flags given explicitly fix a value; a fixed parameter leaves the space.
    base = config_from_flat({**profile_defaults(profile), **flags}, as_flags=True)
    space = default_space(profile)
    fixed: dict[str, Any] = {}
    if args.space is not None:
        space, fixed = apply_space_file(space, fixed, args.space)
        base = config_from_flat(fixed, origin=f"--space {args.space}", base=base)
    for key in flags:
        space.pop(key, None)
    if not base.data.is_synthetic:
        # The profile's min-samples range is sized for its synthetic data; a real dataset
        # keeps the full profile's range unscaled.
        if "min_samples_per_genre" in space:
            space["min_samples_per_genre"] = default_space(get_profile("full"))[
                "min_samples_per_genre"
            ]
    metric = args.metric or "best_val_f1"
    decision = args.decision or (DECISION_SPACE if args.objectives else DECISION_TUNED)
    if args.objectives and decision == DECISION_TUNED:
        raise InputError(
            "--objectives measures every objective at the trial's own decision rule: use it "
            "with --decision space (its default)"
        )
    if decision == DECISION_TUNED:
        if args.space is not None:
            from genretune.search.space import read_space_file

            searched = [k for k, v in read_space_file(args.space).items() if k in DECISION_KEYS]
            if any(isinstance(read_space_file(args.space)[k], dict) for k in searched):
                raise InputError(
                    f"--space {args.space}: threshold/top_k are searched only with --decision "
                    "space (the default, tuned, picks the validation-optimal rule each epoch)"
                )
        for key in DECISION_KEYS:
            space.pop(key, None)
        metric = args.metric or "best_tuned_val_f1"
        base = config_from_flat({"objective": "tuned_val_f1"}, base=base)
    objectives = parse_objectives(args.objectives) if args.objectives is not None else ()
    from genretune.model.metric_keys import natural_mode

    mode = args.mode or natural_mode(metric)
    if objectives:
        if args.metric:
            raise InputError("--objectives and --metric cannot be combined")
        # Flags the objectives decide, refused rather than silently overridden.
        if args.mode:
            raise InputError(
                "--objectives gives each objective's mode (METRIC:max|min): drop --mode"
            )
        if "objective" in vars(args):
            raise InputError(
                "--objectives: its first objective is the training objective: drop --objective"
            )
        if args.cut_trials_as != CUT_AS_COMPLETE:
            raise InputError(
                f"--cut-trials-as {args.cut_trials_as} needs one objective (Optuna prunes "
                "single-objective trials only)"
            )
        first = objectives[0][0]
        # The first objective keeps each trial's best epoch, as `genretune train` would.
        base = config_from_flat({"objective": first}, base=base)
        metric, mode = f"best_{first}", "max"
    epochs, patience = base.optim.epochs, base.optim.patience
    baseline, draws = _baseline_and_draws(args, profile, space, base)
    # On by default wherever it applies; an explicit --late-cut elsewhere is refused (checks).
    late_cut = args.late_cut
    if late_cut is None:
        late_cut = args.scheduler == "asha" and not objectives
    default_name = datetime.now().strftime("search_%Y%m%d_%H%M%S")
    name = experiment.check_name(default_name if args.name is None else args.name)
    settings = SearchSettings(
        name=name,
        storage_path=experiment.resolve_storage_path(args.storage_path),
        profile=profile.name,
        base=base,
        space=space,
        baseline=baseline,
        baseline_draws=draws,
        cut_trials_as=args.cut_trials_as,
        late_cut=late_cut,
        ramp_up=args.ramp_up,
        objectives=objectives,
        metric=metric,
        mode=mode,
        num_samples=args.num_samples if args.num_samples is not None else profile.num_samples,
        grace_period=profile.default_grace_period(epochs, patience)
        if args.grace_period is None
        else args.grace_period,
        reduction_factor=profile.reduction_factor
        if args.reduction_factor is None
        else args.reduction_factor,
        seed=base.seed,
        decision=decision,
        resources=Resources(args.cpus_per_trial, args.gpus_per_trial, args.max_concurrent),
        max_failures=args.max_failures,
        address=args.address,
        data_on_workers=args.data_on_workers,
        optuna_storage=args.optuna_storage,
        progress_interval=args.progress_interval,
        mlflow_uri=args.mlflow_uri,
        sampler=args.sampler,
        tpe_startup_trials=TPE_STARTUP_TRIALS if args.tpe_startup == AUTO else args.tpe_startup,
        tpe_multivariate=args.tpe_multivariate,
        tpe_constant_liar=args.tpe_constant_liar,
        scheduler=args.scheduler,
        budget_epochs=args.budget_epochs,
    )
    if args.tpe_startup == AUTO:
        settings = replace(settings, tpe_startup_trials=auto_tpe_startup(settings))
    return settings


# What `--resume NAME` takes besides the name: where the experiment is and how to watch it. Its
# settings are the experiment's own; a flag that would change them is refused.
RESUME_FLAGS = ("resume", "storage_path", "address", "progress_interval", "verbose")


def flags_beside_resume(args: argparse.Namespace) -> list[str]:
    """The flags given with --resume that it cannot take, as the user spelt them out (a flag
    given with its default value counts too: it would be ignored just the same)."""
    from genretune.search.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    search = commands.choices["search"]
    names = {}
    for action in search._actions:
        action.default = argparse.SUPPRESS  # parsed back, only what was given is present
        long = [o for o in action.option_strings if o.startswith("--")]
        if long:
            names[action.dest] = long[0]
    command_line = getattr(args, "command_line", None)
    if command_line is None:  # not from the command line: compare with the defaults
        defaults = vars(build_parser().parse_args(["search", f"--resume={args.resume}"]))
        given = [k for k, v in vars(args).items() if k not in defaults or defaults[k] != v]
    else:
        given = list(vars(parser.parse_args(command_line)))
    return [names[k] for k in given if k in names and k not in RESUME_FLAGS]


def resume_settings(args: argparse.Namespace) -> SearchSettings:
    extra = flags_beside_resume(args)
    if extra:
        raise InputError(
            f"--resume {args.resume} continues the experiment with its own settings: "
            f"{', '.join(extra)} cannot be changed (start a new search with --name to change them)"
        )
    name = experiment.check_name(args.resume, "--resume")
    storage = experiment.resolve_storage_path(args.storage_path)
    path = Path(storage) / name
    payload = experiment.read_settings(path, "--resume")
    # The watching flags may change; the cluster is the one it ran on unless another is named.
    overrides: dict[str, Any] = {"progress_interval": args.progress_interval}
    if args.address:
        overrides["address"] = args.address
    return settings_from_json(
        payload, name, storage, file=str(path / experiment_dir.SETTINGS_FILE), **overrides
    )


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _best_value(s: SearchSettings, result) -> float:
    """A trial's best value of the search metric over its epochs."""
    values = result.metrics_dataframe[s.metric]
    return float(values.max() if s.mode == "max" else values.min())


def reported_results(s: SearchSettings, results) -> list:
    """The trials that reported the search metric at least once. A trial that never reported
    (started when the budget or a Ctrl-C ended the search) has neither config nor metrics."""
    out = []
    for r in results:
        df = r.metrics_dataframe
        if r.config is None or df is None or s.metric not in df:
            continue
        if df[s.metric].notna().any():
            out.append(r)
    return out


def summary(s: SearchSettings, results, interrupted: bool = False) -> list[str]:
    lines = [f"experiment: {s.experiment_path} ({len(results)} trials)"]
    errors = [r for r in results if r.error]
    if errors:
        lines.append(f"{len(errors)} trial(s) errored; see their error.txt files")
    reported = reported_results(s, results)
    if not reported:
        return [*lines, "no trial reported a result"]
    sign = 1 if s.mode == "max" else -1
    best = max(reported, key=lambda r: sign * _best_value(s, r))
    lines.append(
        f"best trial {best.metrics.get('trial_id')}: {s.metric} = {_fmt(_best_value(s, best))}"
    )
    lines += [f"  {k} = {_fmt(best.config[k])}" for k in s.space if k in best.config]
    if s.baseline:
        as_baseline = [
            r for r in reported if all(r.config.get(k) == v for k, v in s.baseline.items())
        ]
        if as_baseline:
            value = max(sign * _best_value(s, r) for r in as_baseline) * sign
            lines.append(f"baseline configuration: {s.metric} = {_fmt(value)}")
    storage = f" --storage-path {shlex.quote(s.storage_path)}"
    if interrupted:
        return [*lines, "next:", f"  {resume_command(s)}"]
    if s.objectives:
        lines += _front_lines(s)
        lines += [
            "next:",
            f"  genretune results {s.name}{storage} --pareto --plots plots/",
            f"  genretune export {s.name}{storage} --pareto --where "
            f'"{s.objectives[1][0]} >= ..." -o best.json',
            "  genretune train --config best.json",
        ]
        return lines
    lines += [
        "next:",
        f"  genretune results {s.name}{storage}",
        f"  genretune export {s.name}{storage} -o best.json",
        "  genretune train --config best.json",
    ]
    return lines


def _front_lines(s: SearchSettings) -> list[str]:
    """The Pareto front of a multi-objective search, read back from its experiment dir."""
    from genretune.results.experiment import load_experiment
    from genretune.results.pareto import pareto_front

    try:
        front = pareto_front(load_experiment(s.experiment_path))
    except InputError as exc:
        return [f"Pareto front: not available ({exc})"]
    names = [m for m, _ in s.objectives]
    lines = [f"Pareto front: {len(front)} trial(s) on {', '.join(names)}"]
    for _, row in front.iterrows():
        values = ", ".join(f"{m} {_fmt(float(row[m]))}" for m in names)
        lines.append(f"  {row['trial_id']}: {values}")
    return lines


def run(args: argparse.Namespace) -> int:
    flags = config_flags(args)
    if not args.address:
        # Read by Ray when it is imported: a local Ray binds the loopback interface only
        # (search.ray_cluster sets the same when Ray was imported already).
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    if args.resume:
        if args.overwrite:
            raise InputError("--resume and --overwrite cannot be combined")
        settings = resume_settings(args)
    else:
        settings = settings_from_args(args, flags)
    from genretune.search.launch import SearchInterrupted, StorageFull, run_search
    from genretune.search.stop_signals import SearchStopped

    try:
        results = run_search(
            settings, resume=bool(args.resume), overwrite=args.overwrite, verbose=args.verbose
        )
    except StorageFull as stop:
        if stop.results is not None:
            print("\n".join(summary(settings, stop.results, interrupted=True)))
        print(
            f"genretune: error: {settings.experiment_path}: its storage is full ({stop.reason}); "
            "the search stopped and saved what it could: free space, then run:",
            file=sys.stderr,
        )
        print(resume_command(settings), file=sys.stderr)
        return 1
    except SearchInterrupted as stop:
        # Ray saved the experiment: what ran so far, and how to finish it.
        print("\n".join(summary(settings, stop.results, interrupted=True)))
        running = f" ({stop.unfinished} trial(s) were running)" if stop.unfinished else ""
        how = "" if stop.signum == signal.SIGINT else f" by {signal.Signals(stop.signum).name}"
        print(f"genretune: search interrupted{how}{running}; to finish it, run:", file=sys.stderr)
        print(resume_command(settings), file=sys.stderr)
        return 128 + stop.signum
    except SearchStopped as stop:
        print(
            f"genretune: stopped by {signal.Signals(stop.signum).name} before any trial ran",
            file=sys.stderr,
        )
        if args.resume:
            print(resume_command(settings), file=sys.stderr)
        return 128 + stop.signum
    if results is None:
        return 0
    print("\n".join(summary(settings, results)))
    # Errored trials keep their results and error.txt; the exit status tells scripts about them.
    return 1 if results.errors else 0


def resume_command(s: SearchSettings) -> str:
    """The command that finishes an interrupted search, to run verbatim from any directory:
    the experiment's absolute storage path, and the cluster it ran on."""
    words = ["genretune", "search", "--resume", s.name, "--storage-path", s.storage_path]
    if s.address:
        words += ["--address", s.address]
    return shlex.join(words)
