"""The `genretune` command line. Subcommands import their heavy modules lazily, so `--help` and
input errors are fast and `genretune train` never imports Ray."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from genretune.data import InputError


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit 2), matching every other input error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _optional(cast: Callable[[str], Any]) -> Callable[[str], Any]:
    """A flag value that may also be 'none' (e.g. --top-k none, --pos-weight-cap none)."""

    def parse(text: str) -> Any:
        return None if text.lower() == "none" else cast(text)

    parse.__name__ = cast.__name__
    return parse


def add_data_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument(
        "--data",
        help="'synthetic' (default) or a feature dir "
        "(features.npy, labels_multilabel.npy, genres.json, optional split.npy)",
    )
    g.add_argument(
        "--synthetic-scale",
        type=float,
        help="synthetic dataset size; 1.0 = the seed's 38,801 genre labels (default 0.1)",
    )
    g.add_argument("--data-seed", type=int, help="seed of the synthetic data and of the split")
    g.add_argument("--n-mels", type=int, help="synthetic input height (default 32)")
    g.add_argument("--frames", type=int, help="synthetic input width (default 64)")
    g.add_argument("--labels-file", help="labels file name inside the feature dir")
    g.add_argument("--num-genres", type=int, help="expected number of genre columns (checked)")
    g.add_argument("--min-samples-per-genre", type=int, help="keep genres with >= N tracks")
    g.add_argument("--max-genres", type=_optional(int), help="keep at most the N most common")


def add_train_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=int)
    g.add_argument("--batch-size", type=int)
    g.add_argument("--lr", type=float)
    g.add_argument("--weight-decay", type=float)
    g.add_argument("--patience", type=int, help="epochs without improvement before stopping")
    g.add_argument("--base-channels", type=int, help="width of the first conv block")
    g.add_argument("--dropout", type=float)
    g.add_argument("--pos-weight-power", type=float, help="1 = raw neg/pos, 0.5 = sqrt")
    g.add_argument("--pos-weight-cap", type=_optional(float), help="max pos_weight, or none")
    g.add_argument(
        "--prediction-threshold",
        type=_optional(float),
        dest="threshold",
        help="decision threshold in [0, 1], or none for top-K only",
    )
    g.add_argument("--top-k", type=_optional(int), help="keep the K most probable genres, or none")
    g.add_argument(
        "--objective",
        choices=("val_f1", "tuned_val_f1"),
        help="validation metric for patience and best epoch",
    )
    g.add_argument("--seed", type=int, help="training seed (init, shuffling, dropout)")


# argparse dest -> flat config key, for the flags that are config values.
_FLAG_KEYS = {
    "data": "data",
    "synthetic_scale": "synthetic_scale",
    "data_seed": "data_seed",
    "n_mels": "n_mels",
    "frames": "frames",
    "labels_file": "labels_file",
    "num_genres": "num_genres",
    "min_samples_per_genre": "min_samples_per_genre",
    "max_genres": "max_genres",
    "epochs": "epochs",
    "batch_size": "batch_size",
    "lr": "lr",
    "weight_decay": "weight_decay",
    "patience": "patience",
    "base_channels": "base_channels",
    "dropout": "dropout",
    "pos_weight_power": "pos_weight_power",
    "pos_weight_cap": "pos_weight_cap",
    "threshold": "threshold",
    "top_k": "top_k",
    "objective": "objective",
    "seed": "seed",
}
_FLAG_NAMES = {key: "--" + key.replace("_", "-") for key in _FLAG_KEYS}
_FLAG_NAMES["threshold"] = "--prediction-threshold"


def explicit_flags(args: argparse.Namespace, sentinel_none: set[str] | None = None) -> dict:
    """Flat config values of the flags the user actually gave (None = not given)."""
    given = {}
    for dest, key in _FLAG_KEYS.items():
        value = getattr(args, dest, None)
        if value is not None or dest in (sentinel_none or set()):
            given[key] = value
    return given


def _given_none(argv: Sequence[str]) -> set[str]:
    """Dests of optional flags given as 'none' (argparse turns them into None)."""
    out = set()
    for i, token in enumerate(argv):
        name, _, inline = token.partition("=")
        value = inline or (argv[i + 1] if i + 1 < len(argv) else "")
        for dest, flag in _FLAG_NAMES.items():
            if name == flag and value.lower() == "none":
                out.add(dest)
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="genretune",
        description="Hyperparameter search for imbalanced multilabel music-genre CNNs.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    data = sub.add_parser("data", help="dataset tools")
    data_sub = data.add_subparsers(dest="data_command", required=True, parser_class=_Parser)
    stats = data_sub.add_parser("stats", help="print the genre tables of a dataset")
    add_data_flags(stats)
    fma = data_sub.add_parser(
        "prepare-fma", help="FMA metadata + MP3 clips -> a feature dir (log-mel spectrograms)"
    )
    fma.add_argument("--metadata", type=Path, required=True, help="FMA's fma_metadata directory")
    fma.add_argument("--audio", type=Path, required=True, help="e.g. fma_small (000/000002.mp3)")
    fma.add_argument("--out", type=Path, required=True, help="the feature dir to write")
    fma.add_argument("--subset", default="small", help="small (default), medium, large or full")
    fma.add_argument("--labels", default="genres", help="genres (default), genres_all, genre_top")
    fma.add_argument("--min-tracks", type=int, default=1, help="keep genres with >= N tracks")
    fma.add_argument("--sample-rate", type=int, default=22050)
    fma.add_argument("--n-fft", type=int, default=2048)
    fma.add_argument("--hop-length", type=int, default=512)
    fma.add_argument("--n-mels", type=int, default=128)
    fma.add_argument("--frames", type=int, default=1280, help="spectrogram width (hops)")
    fma.add_argument("--min-seconds", type=float, default=10.0, help="skip clips shorter than this")
    fma.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="local processes")
    fma.add_argument("--address", help="decode as Ray tasks on this cluster instead")

    train = sub.add_parser("train", help="train one model and write a model dir with a test report")
    add_data_flags(train)
    add_train_flags(train)
    train.add_argument(
        "--config",
        type=Path,
        help="a JSON config (e.g. from `genretune export`); flags given explicitly override it",
    )
    train.add_argument(
        "--load-tuning-results",
        type=Path,
        help="threshold_tuning_results.json: use its best overall rule",
    )
    train.add_argument("--experiment-name", default="multilabel_cnn")
    train.add_argument("--output-dir", type=Path, default=Path("models/trained_models"))
    train.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda")
    train.add_argument("--threads", type=int, help="torch CPU threads")
    train.add_argument("--debug", action="store_true", help="log pos_weight statistics")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")

    search = sub.add_parser("search", help="Ray Tune + Optuna + ASHA search (the main job)")
    add_data_flags(search)
    add_train_flags(search)
    from genretune.search.command import add_search_flags

    add_search_flags(search)

    from genretune.results.command import add_export_parser, add_results_parser

    add_results_parser(sub)
    add_export_parser(sub)

    tune = sub.add_parser("tune-threshold", help="sweep thresholds and top-K on validation")
    src = tune.add_mutually_exclusive_group(required=True)
    src.add_argument("--model-dir", type=Path, help="a model dir written by `genretune train`")
    src.add_argument("--predictions", type=Path, help=".npz with y_true (N, G) and y_score (N, G)")
    tune.add_argument("--output-dir", type=Path, help="default: the model dir or the npz's dir")
    tune.add_argument("--device", default="auto")
    return parser


def _cmd_data(args: argparse.Namespace, argv: Sequence[str]) -> int:
    if args.data_command == "prepare-fma":
        return _cmd_prepare_fma(args)
    return _cmd_data_stats(args, argv)


def _cmd_prepare_fma(args: argparse.Namespace) -> int:
    try:
        import soundfile  # noqa: F401

        from genretune.data.audio import MelSpec
        from genretune.data.fma import PrepareSettings, prepare_fma
    except ImportError:
        raise InputError("prepare-fma needs soundfile: pip install 'genretune[audio]'") from None
    spec = MelSpec(
        sample_rate=args.sample_rate,
        n_fft=args.n_fft,
        hop_length=args.hop_length,
        n_mels=args.n_mels,
        frames=args.frames,
        min_seconds=args.min_seconds,
    )
    settings = PrepareSettings(
        metadata=args.metadata,
        audio=args.audio,
        out=args.out,
        subset=args.subset,
        labels=args.labels,
        min_tracks=args.min_tracks,
        spec=spec,
        workers=args.workers,
        address=args.address,
    )
    prepare_fma(settings, log=lambda text: print(text, file=sys.stderr, flush=True))
    print(f"next: genretune data stats --data {args.out}")
    return 0


def _cmd_data_stats(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from genretune.data import filter_genres, load_dataset
    from genretune.data.report import dataset_report
    from genretune.model.config import config_from_flat

    cfg = config_from_flat(explicit_flags(args, _given_none(argv)), as_flags=True)
    dataset = load_dataset(cfg.data)
    genre_filter = filter_genres(
        dataset.labels, dataset.genres, cfg.filter.min_samples_per_genre, cfg.filter.max_genres
    )
    print(dataset_report(dataset, genre_filter))
    return 0


def load_config_file(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(flat config, runtime) of a config file: a JSON object of config keys, or `genretune
    export`'s {"config": {...}, "runtime": {...}, "provenance": {...}} (runtime: the device and
    torch threads the trial ran with; {} when the file does not say)."""
    from genretune.model.artifacts import read_json_object

    payload = read_json_object(path, "config file")
    if "provenance" in payload and "config" not in payload:
        raise InputError(f"{path}: missing required key 'config' (an export has config+provenance)")
    runtime: dict[str, Any] = {}
    if "config" in payload:
        extra = sorted(set(payload) - {"config", "provenance", "runtime"})
        if extra:
            raise InputError(f"{path}: unknown top-level key(s): {', '.join(extra)}")
        runtime = payload.get("runtime") or {}
        threads = runtime.get("threads", 1)
        if not isinstance(runtime, dict) or not isinstance(threads, int) or threads < 1:
            raise InputError(f"{path}: 'runtime' must hold a device and threads >= 1")
        payload = payload["config"]
        if not isinstance(payload, dict):
            raise InputError(f"{path}: 'config' must be a JSON object")
    return payload, runtime


def _reproducing_runtime(args: argparse.Namespace, trial: dict[str, Any]):
    """The runtime of `genretune train`: flags first, else the exported trial's device and
    threads, so that a plain `--config best.json` repeats the trial; a run that cannot repeat
    it says so in one line."""
    from genretune.model.device import resolve_runtime

    if args.threads is not None and args.threads < 1:
        raise InputError("--threads must be >= 1")
    device = args.device
    if device == "auto" and trial.get("device"):
        device = trial["device"] if trial["device"] == "cpu" else "auto"
    threads = args.threads if args.threads is not None else trial.get("threads")
    runtime = resolve_runtime(device, threads)
    if trial:
        notes = []
        if runtime.device != trial.get("device", runtime.device):
            notes.append(f"it ran on {trial['device']}, this run on {runtime.device}")
        if threads != trial.get("threads", threads):
            notes.append(f"it ran with {trial['threads']} torch thread(s), this run with {threads}")
        if notes:
            why = "; ".join(notes)
            print(
                f"note: this run will not repeat the trial epoch for epoch ({why})", file=sys.stderr
            )
    return runtime


def _cmd_train(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from genretune.model.config import config_from_flat
    from genretune.model.decision import load_tuning_results
    from genretune.model.standalone import summary_lines, train_and_report

    base, trial_runtime = None, {}
    if args.config is not None:
        flat, trial_runtime = load_config_file(args.config)
        base = config_from_flat(flat, origin=str(args.config))
    flags = explicit_flags(args, _given_none(argv))
    if args.load_tuning_results is not None:
        try:
            best = load_tuning_results(args.load_tuning_results)["best"]["overall"]
        except ValueError as exc:
            raise InputError(str(exc)) from None
        tuned = {"threshold": best.get("threshold"), "top_k": best.get("top_k")}
        flags = {**tuned, **flags}
    cfg = config_from_flat(flags, base=base, as_flags=True)
    from genretune.search.experiment import check_name

    check_name(args.experiment_name, "--experiment-name")
    runtime = _reproducing_runtime(args, trial_runtime)
    from genretune.data.outputs import check_output_dir

    check_output_dir(args.output_dir, "--output-dir")
    outcome = train_and_report(
        cfg, runtime, args.output_dir, args.experiment_name, args.debug, not args.no_progress
    )
    print("\n".join(summary_lines(outcome)))
    return 0


def _cmd_tune_threshold(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from genretune.model.artifacts import load_predictions
    from genretune.model.device import resolve_runtime
    from genretune.model.threshold_tuning import model_dir_predictions, tune, tuning_summary

    if args.model_dir is not None:
        predictions = model_dir_predictions(args.model_dir, resolve_runtime(args.device))
        out = args.output_dir or args.model_dir
    else:
        predictions = {"val": load_predictions(args.predictions)}
        out = args.output_dir or args.predictions.parent
    from genretune.data.outputs import check_output_dir

    check_output_dir(out, "--output-dir")
    sweep, test_report = tune(predictions, out)
    print("\n".join(tuning_summary(sweep, test_report)))
    print(f"wrote {out / 'threshold_tuning_results.json'} and threshold_tuning_plots.png")
    return 0


def _cmd_search(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from genretune.search.command import run

    return run(args, explicit_flags(args, _given_none(argv)))


def _cmd_results(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from genretune.results.command import run_results

    return run_results(args)


def _cmd_export(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from genretune.results.command import run_export

    return run_export(args)


_COMMANDS = {
    "results": _cmd_results,
    "export": _cmd_export,
    "search": _cmd_search,
    "data": _cmd_data,
    "train": _cmd_train,
    "tune-threshold": _cmd_tune_threshold,
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        code = _COMMANDS[args.command](args, argv)
        sys.stdout.flush()
        return code
    except InputError as exc:
        print(f"genretune: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("genretune: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`genretune results x | head -1`): stop quietly, as Unix tools
        # do; stdout is pointed at /dev/null so the interpreter's final flush cannot fail too.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
