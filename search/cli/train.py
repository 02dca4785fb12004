"""`genretune train`: train one model and write a model dir with a held-out test report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from genretune.data import InputError
from genretune.search.cli.common import add_data_flags, add_train_flags, config_flags


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_data_flags(p)
    add_train_flags(p)
    p.add_argument(
        "--config",
        type=Path,
        help="a JSON config (e.g. from `genretune export`); flags given explicitly override it",
    )
    p.add_argument(
        "--load-tuning-results",
        type=Path,
        help="threshold_tuning_results.json: use its best overall rule",
    )
    p.add_argument("--experiment-name", default="multilabel_cnn")
    p.add_argument("--output-dir", type=Path, default=Path("models/trained_models"))
    p.add_argument(
        "--device",
        default="auto",
        help="auto (an exported trial's device, else CUDA if available), cpu, cuda",
    )
    p.add_argument(
        "--threads", type=int, help="torch CPU threads (default: an exported trial's, else all)"
    )
    p.add_argument("--debug", action="store_true", help="log pos_weight statistics")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def load_config_file(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(flat config, runtime) of a config file: a JSON object of config keys, `genretune
    export`'s {"config": {...}, "runtime": {...}, "provenance": {...}} (runtime: the device and
    torch threads the trial ran with; {} when the file does not say), or a model dir's
    config.json (its model card)."""
    from genretune.model.artifacts import read_json_object
    from genretune.model.model_card import FORMAT as MODEL_DIR_FORMAT

    payload = read_json_object(path, "config file")
    if payload.get("format") == MODEL_DIR_FORMAT and isinstance(payload.get("config"), dict):
        # A model dir's card (`genretune train`'s or an export's): its config, and the
        # runtime an export recorded (else the device it trained on).
        runtime = payload.get("runtime") or {"device": payload.get("device", "cpu")}
        payload = {k: payload[k] for k in ("config", "runtime", "provenance") if k in payload}
        payload["runtime"] = runtime
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


def run(args: argparse.Namespace) -> int:
    from genretune.data.report import dataset_report
    from genretune.model.config import config_from_flat
    from genretune.model.decision import load_tuning_results
    from genretune.model.pos_weight import describe_pos_weight
    from genretune.model.training_run import prepare_run, train_run
    from genretune.output_files import check_output_dir, check_outside_experiment
    from genretune.results.experiment_dir import enclosing_experiment
    from genretune.search.experiment_writer import check_name

    base, trial_runtime = None, {}
    if args.config is not None:
        flat, trial_runtime = load_config_file(args.config)
        base = config_from_flat(flat, origin=str(args.config))
    flags = config_flags(args)
    if args.load_tuning_results is not None:
        try:
            best = load_tuning_results(args.load_tuning_results)["best"]["overall"]
        except ValueError as exc:
            raise InputError(str(exc)) from None
        tuned = {"threshold": best.get("threshold"), "top_k": best.get("top_k")}
        flags = {**tuned, **flags}
    cfg = config_from_flat(flags, base=base)
    check_name(args.experiment_name, "--experiment-name")
    runtime = _reproducing_runtime(args, trial_runtime)
    check_outside_experiment(args.output_dir, "--output-dir", enclosing_experiment(args.output_dir))
    check_output_dir(args.output_dir, "--output-dir")

    prepared = prepare_run(cfg)
    _log(dataset_report(prepared.dataset, prepared.genre_filter))
    if args.debug:
        _log(describe_pos_weight(prepared.pos_weight, prepared.genre_filter.kept_genres))
    _log(
        f"\nTraining on {len(prepared.train_idx):,} tracks, {prepared.genre_filter.n_kept} "
        f"genres, device {runtime.device}; the model dir goes to {args.output_dir} when done"
    )
    from tqdm import tqdm

    bar = tqdm(total=cfg.optim.epochs, unit="epoch", disable=args.no_progress, file=sys.stderr)

    def on_epoch(report) -> None:
        m = report.metrics
        bar.set_postfix(
            loss=f"{m['train_loss']:.3f}",
            val_f1=f"{m['val_f1']:.3f}",
            best=f"{m['best_val_f1']:.3f}",
            preds=f"{m['val_avg_predictions']:.1f}",
        )
        bar.update(1)

    try:
        outcome = train_run(prepared, cfg, runtime, args.output_dir, args.experiment_name, on_epoch)
    finally:
        bar.close()
    print("\n".join(summary_lines(outcome)))
    return 0


def summary_lines(outcome) -> list[str]:
    from genretune.model.decision import DecisionRule

    m = outcome.metrics
    lines = [
        f"Best epoch {m['best_epoch']} of {m['epochs_run']} ({m['stop_reason']}); "
        f"rule {DecisionRule(**m['decision_rule']).describe()}",
    ]
    header = f"{'':22s}{'F1':>7s}{'Prec':>7s}{'Recall':>7s}{'Jacc':>7s}{'Hamm':>8s}{'Preds':>7s}"
    lines.append(header)
    for key, label in (
        ("val", "val"),
        ("test", "test"),
        ("val_tuned_rule", "val (tuned rule)"),
        ("test_tuned_rule", "test (tuned rule)"),
    ):
        if key not in m:
            continue
        s = key.split("_")[0]
        r = m[key]
        lines.append(
            f"{label:22s}{r[f'{s}_f1']:7.3f}{r[f'{s}_precision']:7.3f}{r[f'{s}_recall']:7.3f}"
            f"{r[f'{s}_jaccard']:7.3f}{r[f'{s}_hamming_loss']:8.4f}{r[f'{s}_avg_predictions']:7.2f}"
        )
    tuned = DecisionRule(**{k: v for k, v in m["tuned_decision_rule"].items() if k != "fitted_on"})
    lines.append(f"tuned rule (fitted on val): {tuned.describe()}")
    lines.append(f"model dir: {outcome.run_dir}")
    return lines
