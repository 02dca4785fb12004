"""`genretune predict`: tag tracks with a trained model dir.

One output row per input track, in input order: `track`, `genres` (the predicted genres joined
by `|`, empty for none) and `p:<genre>` for every genre the model predicts, in its order. The
input streams: feature arrays are read a block of rows at a time, audio is decoded a batch at
a time, so neither has to fit in memory."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from genretune.data import InputError

OUTPUT_SUFFIXES = (".csv", ".json", ".parquet")
AUDIO_SUFFIXES = (".mp3", ".wav", ".flac", ".ogg", ".oga", ".aiff", ".aif", ".au")
AUDIO_BATCH = 64
TRACK_IDS_FILE = "track_ids.npy"  # prepare-fma's FMA track ids, one per feature row


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model-dir", type=Path, required=True, help="a model dir of `genretune train`")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--features", type=Path, help="an .npy array (N, n_mels, frames)")
    source.add_argument(
        "--feature-dir",
        type=Path,
        help="a feature dir (its features.npy; track_ids.npy names rows)",
    )
    source.add_argument(
        "--audio",
        type=Path,
        nargs="+",
        help="audio files or directories of them (needs a model trained on prepare-fma features)",
    )
    p.add_argument(
        "-o", "--output", type=Path, required=True, help="OUT.csv, OUT.json or OUT.parquet"
    )
    p.add_argument("--force", action="store_true", help="replace an existing --output")
    p.add_argument(
        "--threshold",
        type=float,
        help="predict every genre with p >= T (alone: no top-K; default: the model's rule)",
    )
    p.add_argument(
        "--top-k", type=int, help="predict the K most probable genres (alone: no threshold)"
    )
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    p.add_argument(
        "--batch-size",
        type=int,
        default=64,
        help="tracks per forward pass (default 64, as training's evaluation; smaller takes "
        "less memory: about 1.5 GB at 64 for base 16 at 128 x 1280)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=min(4, os.cpu_count() or 1),
        help="processes decoding --audio (default: the CPUs, at most 4)",
    )


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _check_output(path: Path, force: bool) -> str:
    from genretune.output_files import check_output_file

    suffix = path.suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise InputError(f"-o {path}: the name must end in {', '.join(OUTPUT_SUFFIXES)}")
    if suffix == ".parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise InputError(f"-o {path}: parquet needs pyarrow (pip install pyarrow)") from None
    check_output_file(path, "-o", force)
    return suffix[1:]


def _as_tracks(npy):
    """One clip saved alone, (n_mels, frames), is one track."""
    import dataclasses

    return dataclasses.replace(npy, shape=(1, *npy.shape)) if len(npy.shape) == 2 else npy


def _feature_input(args: argparse.Namespace):
    """(the .npy file, track names, what to call it in errors) of --features / --feature-dir."""
    from genretune.data.npy_stream import open_npy

    if args.features is not None:
        npy = _as_tracks(open_npy(args.features, "--features"))
        return npy, list(range(npy.rows)), f"--features {args.features}"
    directory = args.feature_dir
    if not directory.is_dir():
        raise InputError(f"--feature-dir {directory}: directory not found")
    npy = _as_tracks(open_npy(directory / "features.npy", "--feature-dir"))
    names: list[Any] = list(range(npy.rows))
    ids_path = directory / TRACK_IDS_FILE
    if ids_path.is_file():
        try:
            ids = np.load(ids_path, allow_pickle=False)
        except (ValueError, OSError, EOFError):
            ids = np.zeros((0,), dtype=object)
        if ids.ndim != 1 or len(ids) != len(names) or ids.dtype.kind not in "iu":
            raise InputError(
                f"--feature-dir {ids_path}: must be {len(names)} integer track ids, one per row"
            )
        names = [int(i) for i in ids]
    return npy, names, f"--feature-dir {directory / 'features.npy'}"


def _audio_files(paths: list[Path]) -> list[tuple[str, Path]]:
    """(name, file) of every audio file given, directories walked in name order."""
    found: list[tuple[str, Path]] = []
    for given in paths:
        if given.is_dir():
            files = sorted(
                p for p in given.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES
            )
            found += [(str(p.relative_to(given)), p) for p in files]
        elif given.is_file():
            found.append((str(given), given))
        else:
            raise InputError(f"--audio {given}: no such file or directory")
    if not found:
        raise InputError(
            f"--audio {' '.join(map(str, paths))}: no audio files ({', '.join(AUDIO_SUFFIXES)})"
        )
    return found


def _decode_clip(path: Path, spec) -> np.ndarray | str:
    """A clip's features as prepare-fma stores them (float16), or why it cannot be decoded."""
    from genretune.data.audio import ClipError, decode

    try:
        return decode(path, spec).astype(np.float16)
    except ClipError as exc:
        return str(exc)
    except Exception as exc:  # one odd file must not stop the others
        return f"failed to decode ({type(exc).__name__})"


def _decoded_audio(
    files: list[tuple[str, Path]],
    settings: dict[str, Any],
    skipped: list[tuple[str, str]],
    workers: int = 1,
) -> Iterator[tuple[list[str], np.ndarray]]:
    """(names, features) a batch at a time, in input order: each clip through prepare-fma's own
    code; a clip that cannot be decoded is skipped with why."""
    from concurrent.futures import ProcessPoolExecutor
    from contextlib import nullcontext
    from functools import partial

    from tqdm import tqdm

    from genretune.data.audio import MelSpec

    decode_one = partial(_decode_clip, spec=MelSpec(**settings))
    pool = ProcessPoolExecutor(max_workers=workers) if workers > 1 else nullcontext()
    with pool, tqdm(total=len(files), unit="clip", file=sys.stderr, disable=None) as bar:
        for start in range(0, len(files), AUDIO_BATCH):
            batch = files[start : start + AUDIO_BATCH]
            paths = [path for _, path in batch]
            decoded = pool.map(decode_one, paths) if workers > 1 else map(decode_one, paths)
            names, rows = [], []
            for (name, _), clip in zip(batch, decoded, strict=True):
                if isinstance(clip, str):
                    skipped.append((name, clip))
                else:
                    names.append(name)
                    rows.append(clip)
                bar.update(1)
            if rows:
                yield names, np.stack(rows)


def _audio_settings(model, given: list[Path]) -> dict[str, Any]:
    settings = model.audio_settings
    if settings is None:
        source = model.card["features"].get("source", "unknown")
        raise InputError(
            f"--audio: {model.path} was trained on {source} features, not on audio prepared by "
            "`genretune data prepare-fma`: it has no audio settings (give --features)"
        )
    try:
        import soundfile  # noqa: F401
    except (ImportError, OSError):
        raise InputError("--audio needs soundfile: pip install 'genretune[audio]'") from None
    return settings


def _frame(model, names: list[Any], prob: np.ndarray, rule) -> Any:
    import pandas as pd

    tags = model.tags(prob, rule)
    genres = np.array(model.genres, dtype=object)
    frame = pd.DataFrame({"track": names, "genres": ["|".join(genres[row]) for row in tags]})
    probs = pd.DataFrame(prob.astype(np.float64), columns=[f"p:{g}" for g in model.genres])
    return pd.concat([frame, probs], axis=1)


def _header(model, rule) -> dict[str, Any]:
    removed = [g for g in model.all_genres if g not in set(model.genres)]
    return {
        "model_dir": str(model.path),
        "label_space": {
            "genres": list(model.genres),
            "of_dataset_genres": len(model.all_genres),
            "never_predicted": removed,
        },
        "decision_rule": rule.to_dict(),
        "rule_source": "given" if rule is not model.rule else model.card["decision_rule"],
    }


def _render(df, fmt: str, header: dict[str, Any]) -> bytes:
    if fmt == "csv":
        return df.to_csv(index=False, float_format="%.9g").encode("utf-8")
    if fmt == "json":
        rows = json.loads(df.to_json(orient="records", double_precision=15))
        return (json.dumps({**header, "tracks": rows}, indent=1) + "\n").encode("utf-8")
    import io

    buffer = io.BytesIO()
    df.to_parquet(buffer, index=False)
    return buffer.getvalue()


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from genretune.model.predictor import load_model
    from genretune.output_files import write_bytes_atomically

    fmt = _check_output(args.output, args.force)
    if args.workers < 1:
        raise InputError(f"--workers {args.workers}: must be >= 1")
    model = load_model(args.model_dir, device=args.device, batch_size=args.batch_size)
    rule = model.rule_for(args.threshold, args.top_k)
    frames = []
    skipped: list[tuple[str, str]] = []
    if args.audio is not None:
        settings = _audio_settings(model, args.audio)
        files = _audio_files(args.audio)
        for names, block in _decoded_audio(files, settings, skipped, args.workers):
            prob = model.probabilities_of_block(next(model.blocks(block, "--audio")))
            frames.append(_frame(model, names, prob, rule))
        if skipped:
            reasons = pd.Series([why for _, why in skipped]).value_counts().head(3)
            summary = "; ".join(f"{n} {why}" for why, n in reasons.items())
            if not frames:
                raise InputError(f"--audio: no file could be decoded ({summary})")
            _log(f"skipped {len(skipped)} of {len(files)} audio files ({summary})")
    else:
        npy, names, what = _feature_input(args)
        model.check_input(npy.shape, npy.dtype, what)
        if npy.rows == 0:
            raise InputError(f"{what}: no tracks (0 rows)")
        for start, raw in npy.blocks(model.rows_per_block):
            prob = model.probabilities_of_block(model.prepared_block(raw, start, what))
            frames.append(_frame(model, names[start : start + len(raw)], prob, rule))
    df = pd.concat(frames, ignore_index=True) if frames else _frame(model, [], np.zeros(
        (0, len(model.genres)), np.float32), rule)  # fmt: skip
    write_bytes_atomically(args.output, _render(df, fmt, _header(model, rule)), "-o")
    # Said once the output is written: a bad input is then the only line on stderr.
    removed = len(model.all_genres) - len(model.genres)
    _log(
        f"model {model.path}: predicts {len(model.genres)} of its dataset's "
        f"{len(model.all_genres)} genres ({removed} filtered out in training are never "
        f"predicted); rule: {rule.describe()}"
        + (" (the model's, tuned on validation)" if rule is model.rule else " (given)")
    )
    tagged = int((df["genres"] != "").sum())
    _log(f"wrote {args.output}: {len(df)} tracks, {tagged} with at least one genre")
    return 0
