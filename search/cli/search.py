"""`genretune search`: turn flags into SearchSettings, run (or resume) the search, and print
the outcome."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from genretune.data import InputError
from genretune.model.config import config_from_flat
from genretune.results import experiment_dir
from genretune.search import experiment_writer
from genretune.search.algorithms import AUTO, auto_tpe_startup
from genretune.search.cli.common import config_flags
from genretune.search.cli.search_flags import add_arguments  # noqa: F401 (the command's flags)
from genretune.search.cli.search_summary import resume_command, summary
from genretune.search.profiles import get_profile
from genretune.search.settings import (
    CUT_AS_COMPLETE,
    DECISION_SPACE,
    DECISION_TUNED,
    TPE_STARTUP_TRIALS,
    Resources,
    SearchSettings,
    settings_from_json,
)
from genretune.search.space import (
    DECISION_KEYS,
    apply_space_file,
    baseline_point,
    default_space_for,
    draws_around,
    moved_baseline_values,
    profile_defaults,
    read_baseline_file,
    read_space_file,
)


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
    entries = read_space_file(args.space) if args.space is not None else None
    base, space = _base_and_space(args, flags, profile, entries)
    decision, base, space = _decision_rule(args, base, space, entries)
    objectives, metric, mode, base = _objectives(args, base, decision)
    epochs, patience = base.optim.epochs, base.optim.patience
    baseline, draws = _baseline_and_draws(args, profile, space, base)
    # On by default wherever it applies; an explicit --late-cut elsewhere is refused (checks).
    late_cut = args.late_cut
    if late_cut is None:
        late_cut = args.scheduler == "asha" and not objectives
    default_name = datetime.now().strftime("search_%Y%m%d_%H%M%S")
    name = experiment_writer.check_name(default_name if args.name is None else args.name)
    settings = SearchSettings(
        name=name,
        storage_path=experiment_writer.resolve_storage_path(args.storage_path),
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


def _base_and_space(args, flags: dict[str, Any], profile, entries: dict | None):
    """(fixed configuration, searched space): the profile's, then the space file's entries,
    then the flags given (a flag given fixes its value: it leaves the space)."""
    base = config_from_flat({**profile_defaults(profile), **flags})
    space = default_space_for(profile, base.data.is_synthetic)
    if entries is not None:
        space, fixed = apply_space_file(space, args.space, entries)
        base = config_from_flat(fixed, origin=f"--space {args.space}", base=base)
    for key in flags:
        space.pop(key, None)
    return base, space


def _decision_rule(args, base, space, entries: dict | None):
    """(decision, base, space): with `--decision tuned` each epoch picks the validation-optimal
    threshold/top-K, so they leave the space and the training objective is tuned_val_f1."""
    decision = args.decision or (DECISION_SPACE if args.objectives else DECISION_TUNED)
    if args.objectives and decision == DECISION_TUNED:
        raise InputError(
            "--objectives measures every objective at the trial's own decision rule: use it "
            "with --decision space (its default)"
        )
    if decision != DECISION_TUNED:
        return decision, base, space
    if entries and any(isinstance(entries.get(k), dict) for k in DECISION_KEYS):
        raise InputError(
            f"--space {args.space}: threshold/top_k are searched only with --decision "
            "space (the default, tuned, picks the validation-optimal rule each epoch)"
        )
    space = {k: v for k, v in space.items() if k not in DECISION_KEYS}
    return decision, config_from_flat({"objective": "tuned_val_f1"}, base=base), space


def _objectives(args, base, decision: str):
    """(objectives, metric, mode, base): one metric and its mode, or with --objectives the
    Pareto search's objectives, whose first picks each trial's best epoch (flags they decide
    are refused rather than silently overridden)."""
    from genretune.model.metric_keys import natural_mode

    default = "best_tuned_val_f1" if decision == DECISION_TUNED else "best_val_f1"
    metric = args.metric or default
    if args.objectives is None:
        return (), metric, args.mode or natural_mode(metric), base
    objectives = parse_objectives(args.objectives)
    if args.metric:
        raise InputError("--objectives and --metric cannot be combined")
    if args.mode:
        raise InputError("--objectives gives each objective's mode (METRIC:max|min): drop --mode")
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
    return objectives, f"best_{first}", "max", config_from_flat({"objective": first}, base=base)


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
    name = experiment_writer.check_name(args.resume, "--resume")
    storage = experiment_writer.resolve_storage_path(args.storage_path)
    path = Path(storage) / name
    payload = experiment_dir.read_settings(path, "--resume")
    # The watching flags may change; the cluster is the one it ran on unless another is named.
    overrides: dict[str, Any] = {"progress_interval": args.progress_interval}
    if args.address:
        overrides["address"] = args.address
    return settings_from_json(
        payload, name, storage, file=str(path / experiment_dir.SETTINGS_FILE), **overrides
    )


def run(args: argparse.Namespace) -> int:
    if args.address:
        return _run(args)
    # Read by Ray when it is imported, and by the processes a local Ray starts: it binds the
    # loopback interface only (search.ray_cluster sets the same when Ray was imported already).
    # Set for this search only: a `ray start` run later by the same process (a notebook, a
    # test session) must not inherit it.
    previous = os.environ.get(LOOPBACK_ONLY)
    os.environ.setdefault(LOOPBACK_ONLY, "0")
    try:
        return _run(args)
    finally:
        if previous is None:
            os.environ.pop(LOOPBACK_ONLY, None)


LOOPBACK_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def _run(args: argparse.Namespace) -> int:
    flags = config_flags(args)
    if args.resume:
        if args.overwrite:
            raise InputError("--resume and --overwrite cannot be combined")
        settings = resume_settings(args)
    else:
        settings = settings_from_args(args, flags)
    from genretune.search.launch import run_search
    from genretune.search.stop_signals import SearchInterrupted, SearchStopped, StorageFull

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
