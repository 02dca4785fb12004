"""The `genretune` command line: one module per command, each holding its arguments
(`add_arguments`) and its handler (`run`). Handlers import their heavy modules lazily, so
`--help` and input errors are fast and `genretune train` never imports Ray."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from genretune.data import InputError
from genretune.errors import BadValue
from genretune.search.cli import (
    dashboard,
    data_stats,
    environment,
    export,
    predict,
    prepare_fma,
    results,
    search,
    train,
    tune_threshold,
)
from genretune.search.cli.common import Parser, config_flags, flag_of

__all__ = ["build_parser", "config_flags", "main"]

# (command, module, help); `data` groups the dataset tools.
COMMANDS = (
    ("train", train, "train one model and write a model dir with a test report"),
    ("search", search, "Ray Tune + Optuna + ASHA search (the main job)"),
    ("results", results, "table, curves, exports and plots of an experiment"),
    ("dashboard", dashboard, "serve optuna-dashboard on an experiment's Optuna study"),
    ("export", export, "write a trial's full config for `genretune train --config`"),
    ("predict", predict, "tag tracks (features or audio) with a trained model dir"),
    ("tune-threshold", tune_threshold, "sweep thresholds and top-K on validation"),
)
DATA_COMMANDS = (
    ("stats", data_stats, "print the genre tables of a dataset"),
    ("prepare-fma", prepare_fma, "FMA metadata + MP3 clips -> a feature dir (log-mels)"),
)


def build_parser() -> Parser:
    parser = Parser(
        prog="genretune",
        description="Hyperparameter search for imbalanced multilabel music-genre CNNs.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    data = sub.add_parser("data", help="dataset tools")
    data_sub = data.add_subparsers(dest="data_command", required=True, parser_class=Parser)
    for name, module, help_text in DATA_COMMANDS:
        module.add_arguments(data_sub.add_parser(name, help=help_text))
        data_sub.choices[name].set_defaults(handler=module.run)
    for name, module, help_text in COMMANDS:
        module.add_arguments(sub.add_parser(name, help=help_text))
        sub.choices[name].set_defaults(handler=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    environment.configure_streams()  # genre names and paths need not be ASCII
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.command_line = argv  # what was given, not just the values (--resume checks it)
    try:
        # HOME, TMPDIR, the working directory, the locale: what this command needs of them.
        environment.check_environment(args)
        code = args.handler(args)
        if sys.stdout is not None:
            sys.stdout.flush()
        return code
    except BadValue as exc:  # named by its key below the CLI: here by the flag it came from
        flag = flag_of(exc.key, getattr(args, "renamed_flags", None))
        print(f"genretune: error: {exc.named(flag)}", file=sys.stderr)
        return 2
    except InputError as exc:
        print(f"genretune: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("genretune: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`genretune results x | head -1`): stop quietly, as Unix tools
        # do; stdout is pointed at /dev/null so the interpreter's final flush cannot fail too.
        environment.silence_stdout()
        return 141
    except OSError:
        # Standard output on a full disk (`genretune results x > /dev/full`): one line, as for
        # bad input; any other OSError is a fault of genretune's and keeps its traceback.
        reason = environment.stdout_failure()
        if reason is None:
            raise
        print(f"genretune: error: standard output: cannot write ({reason})", file=sys.stderr)
        environment.silence_stdout()
        return 2


if __name__ == "__main__":
    sys.exit(main())
