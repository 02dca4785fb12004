"""The Free Music Archive (FMA) as distributed -> a feature dir.

Metadata: `tracks.csv` (three header lines: group, column, then `track_id`; genre lists as Python
list literals, parsed with `ast.literal_eval`) and `genres.csv` (`genre_id,#tracks,parent,title,
top_level`). Audio: `<audio dir>/<first 3 digits>/<6-digit id>.mp3`.

The preparation is resumable and memory-bounded: rows are decoded in parallel and written into a
memory-mapped array under `<out>/.prepare/`, with a status array saying which rows are complete
(written, then flushed, then marked). A rerun decodes only the rows not yet complete. Clips that
cannot become a row are listed in `skipped.csv` with the reason; the final `features.npy` holds
only complete rows.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from genretune.data.audio import MelSpec
from genretune.data.dataset import TEST, TRAIN, VAL
from genretune.data.feature_dir import FEATURES_FILE, GENRES_FILE, LABELS_FILE, SPLIT_FILE
from genretune.data.fma_decoding import Decoder, audio_path, local_decoder
from genretune.errors import InputError, first_line
from genretune.output_files import write_text_atomically

SUBSETS = {
    "small": {"small"},
    "medium": {"small", "medium"},
    "large": {"small", "medium", "large"},
    "full": None,  # every track, whatever its subset
}
LABEL_COLUMNS = ("genres", "genres_all", "genre_top")
SPLITS = {"training": TRAIN, "validation": VAL, "test": TEST}
WORK_DIR = ".prepare"
SKIPPED_FILE = "skipped.csv"
TRACK_IDS_FILE = "track_ids.npy"
PREPARE_FILE = "prepare.json"
PENDING, DONE, SKIPPED = 0, 1, 2


@dataclass(frozen=True)
class FmaLabels:
    track_ids: np.ndarray  # (N,) int64
    labels: np.ndarray  # (N, G) uint8
    genres: tuple[str, ...]
    split: np.ndarray  # (N,) int8
    unlabeled: np.ndarray  # track ids with no genre label (not prepared)


def read_tracks(metadata_dir: Path) -> pd.DataFrame:
    path = metadata_dir / "tracks.csv"
    if not path.is_file():
        raise InputError(f"{path}: file not found (--metadata is FMA's fma_metadata directory)")
    try:
        tracks = pd.read_csv(path, index_col=0, header=[0, 1], low_memory=False)
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not FMA's tracks.csv ({first_line(exc)})") from None
    needed = [("set", "split"), ("set", "subset"), *(("track", c) for c in LABEL_COLUMNS)]
    missing = [f"{a}.{b}" for a, b in needed if (a, b) not in tracks.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}")
    if tracks.index.name != "track_id" or not pd.api.types.is_integer_dtype(tracks.index):
        raise InputError(f"{path}: the third header line must start with track_id, ids integers")
    return tracks


def read_genre_table(metadata_dir: Path) -> pd.DataFrame:
    path = metadata_dir / "genres.csv"
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        genres = pd.read_csv(path, index_col="genre_id")
    except (ValueError, pd.errors.ParserError) as exc:
        raise InputError(f"{path}: not FMA's genres.csv ({first_line(exc)})") from None
    missing = {"parent", "title"} - set(genres.columns)
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
    duplicated = genres.index[genres.index.duplicated()].unique()
    if len(duplicated):
        shown = ", ".join(map(str, duplicated[:5]))
        raise InputError(f"{path}: genre_id {shown} appears more than once")
    return genres


def _genre_ids(text: object, where: str) -> list[int]:
    if not isinstance(text, str) or not text.strip():
        return []
    try:
        value = ast.literal_eval(text)  # a Python list literal; never eval
    except (ValueError, SyntaxError):
        raise InputError(f"{where}: {text!r} is not a list of genre ids") from None
    if not isinstance(value, list) or not all(isinstance(v, int) for v in value):
        raise InputError(f"{where}: {text!r} is not a list of genre ids")
    return value


def build_labels(
    tracks: pd.DataFrame,
    genre_table: pd.DataFrame,
    subset: str,
    label_column: str,
    min_tracks: int,
    where: str,
) -> FmaLabels:
    """Multi-hot labels of the subset's tracks over the genres with >= min_tracks of them."""
    wanted = SUBSETS[subset]
    if wanted is not None:
        tracks = tracks[tracks[("set", "subset")].isin(wanted)]
    split_names = tracks[("set", "split")]
    bad = sorted(set(split_names.dropna()) - set(SPLITS))
    if bad:
        raise InputError(f"{where}: set.split has unknown value(s) {bad}")
    titles = genre_table["title"].astype(str)
    if label_column == "genre_top":
        by_title = {t: i for i, t in titles.items()}
        per_track = []
        for tid, title in tracks[("track", "genre_top")].items():
            if isinstance(title, str) and title and title not in by_title:
                raise InputError(f"{where}: track {tid}: genre_top {title!r} not in genres.csv")
            per_track.append([by_title[title]] if isinstance(title, str) and title else [])
    else:
        per_track = [
            _genre_ids(text, f"{where}: track {tid}")
            for tid, text in tracks[("track", label_column)].items()
        ]
    unknown = sorted({g for ids in per_track for g in ids} - set(titles.index))
    if unknown:
        raise InputError(f"{where}: genre id(s) {unknown[:5]} not in genres.csv")
    counts = pd.Series([g for ids in per_track for g in ids], dtype="int64").value_counts()
    kept = sorted(int(g) for g, n in counts.items() if n >= max(min_tracks, 1))
    if not kept:
        raise InputError(f"--min-tracks {min_tracks}: no genre has that many tracks in {subset}")
    column = {g: j for j, g in enumerate(kept)}
    labels = np.zeros((len(tracks), len(kept)), dtype=np.uint8)
    for i, ids in enumerate(per_track):
        for g in ids:
            if g in column:
                labels[i, column[g]] = 1
    has_label = labels.any(axis=1) & split_names.notna().to_numpy()
    ids = tracks.index.to_numpy(dtype=np.int64)
    if not has_label.any():
        raise InputError(f"{where}: no track of subset {subset} has a genre label and a split")
    names = [titles[g] for g in kept]
    if len(set(names)) != len(names):  # titles are unique in FMA; keep them so if not
        names = [f"{titles[g]} ({g})" for g in kept]
    split = np.array([SPLITS[s] for s in split_names[has_label]], dtype=np.int8)
    return FmaLabels(ids[has_label], labels[has_label], tuple(names), split, ids[~has_label])


@dataclass(frozen=True)
class PrepareSettings:
    metadata: Path
    audio: Path
    out: Path
    subset: str = "small"
    labels: str = "genres"
    min_tracks: int = 1
    spec: MelSpec = MelSpec()
    workers: int = 1

    def identity(self) -> dict:
        """What makes two runs the same preparation (a rerun resumes only when equal)."""
        return {
            "metadata": str(self.metadata.resolve()),
            "audio": str(self.audio.resolve()),
            "subset": self.subset,
            "labels": self.labels,
            "min_tracks": self.min_tracks,
            "mel": self.spec.to_json(),
        }


def check_settings(s: PrepareSettings, local: bool = True) -> None:
    """Refuses bad settings in one line; `local`: decoding in local processes (s.workers)."""
    if s.subset not in SUBSETS:
        raise InputError(f"--subset must be one of {', '.join(SUBSETS)}")
    if s.labels not in LABEL_COLUMNS:
        raise InputError(f"--labels must be one of {', '.join(LABEL_COLUMNS)}")
    if s.min_tracks < 1:
        raise InputError("--min-tracks must be >= 1")
    cpus = os.cpu_count() or 1
    if s.workers < 1 or (local and s.workers > cpus):
        raise InputError(
            f"--workers {s.workers}: must be in [1, {cpus}] (the CPUs of this machine; "
            "use --address to decode on a Ray cluster)"
        )
    s.spec.check()
    if not s.metadata.is_dir():
        raise InputError(f"--metadata {s.metadata}: directory not found")
    if not s.audio.is_dir():
        raise InputError(f"--audio {s.audio}: directory not found")
    if s.out.exists() and not s.out.is_dir():
        raise InputError(f"--out {s.out}: exists and is not a directory")


def check_disk_space(out: Path, needed: int) -> None:
    existing = out
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    if needed > free:
        raise InputError(
            f"--out {out}: the features need {needed / 2**30:,.1f} GiB and {existing} has "
            f"{free / 2**30:,.1f} GiB free (check --n-mels/--frames)"
        )


def _existing_identity(out: Path) -> dict | None:
    for path in (out / PREPARE_FILE, out / WORK_DIR / PREPARE_FILE):
        if path.is_file():
            try:
                return json.loads(path.read_text(encoding="utf-8"))["identity"]
            except (json.JSONDecodeError, KeyError):
                raise InputError(f"{path}: unreadable; remove --out {out} to start over") from None
    return None


def prepare_fma(
    s: PrepareSettings,
    log: Callable[[str], None] = print,
    decoder: tuple[Decoder, str] | None = None,
) -> dict:
    """Make (or finish) the feature dir; returns the summary written to prepare.json.
    `decoder`: (a Decoder, what to call it) to decode elsewhere (`prepare-fma --address`
    hands in Ray tasks); by default s.workers local processes."""
    check_settings(s, local=decoder is None)
    tracks = read_tracks(s.metadata)
    genre_table = read_genre_table(s.metadata)
    where = str(s.metadata / "tracks.csv")
    fma = build_labels(tracks, genre_table, s.subset, s.labels, s.min_tracks, where)
    identity = s.identity()
    previous = _existing_identity(s.out) if s.out.is_dir() else None
    if previous is not None and previous != identity:
        raise InputError(
            f"--out {s.out}: holds a preparation with other settings; use another --out"
        )
    if s.out.is_dir() and previous is None and any(s.out.iterdir()):
        raise InputError(f"--out {s.out}: exists and is not a prepare-fma output; not touching it")
    if (s.out / PREPARE_FILE).is_file():
        log(f"{s.out}: already prepared with these settings; nothing to do")
        return json.loads((s.out / PREPARE_FILE).read_text(encoding="utf-8"))

    work = s.out / WORK_DIR
    n, spec = len(fma.track_ids), s.spec
    shape = (n, spec.n_mels, spec.frames)
    features_path, status_path = work / "features_all.npy", work / "status.npy"
    if features_path.is_file() and status_path.is_file():
        features = np.load(features_path, mmap_mode="r+")
        status = np.load(status_path, mmap_mode="r+")
    else:
        check_disk_space(s.out, 2 * n * spec.n_mels * spec.frames)
        created = not s.out.exists()
        try:
            work.mkdir(parents=True, exist_ok=True)
            features = np.lib.format.open_memmap(features_path, "w+", np.float16, shape)
            status = np.lib.format.open_memmap(status_path, "w+", np.int8, (n,))
        except (OSError, ValueError, MemoryError) as exc:
            # Nothing is left behind that would make a later, valid run refuse this --out.
            shutil.rmtree(s.out if created else work, ignore_errors=True)
            raise InputError(f"--out {s.out}: cannot create the feature array ({exc})") from None
    write_text_atomically(work / PREPARE_FILE, json.dumps({"identity": identity}, indent=1))
    reasons_path = work / "reasons.jsonl"
    todo = [(int(i), int(fma.track_ids[i])) for i in np.flatnonzero(status == PENDING)]
    if len(todo) < n:
        log(f"resuming: {n - len(todo):,} of {n:,} tracks already done")
    decode, where = decoder or (local_decoder(s.workers), f"{s.workers} process(es)")
    log(f"decoding {len(todo):,} clips into {spec.n_mels}x{spec.frames} log-mels ({where})")
    from tqdm import tqdm

    results = decode(s.audio, spec, todo)
    with (
        open(reasons_path, "a", encoding="utf-8") as reasons,
        tqdm(total=len(todo), unit="clip", file=sys.stderr, disable=None) as bar,
    ):
        for chunk in results:
            for row, mel, reason in chunk:
                if mel is not None:
                    features[row] = mel.astype(np.float16)
                else:
                    reasons.write(json.dumps({"row": row, "reason": reason}) + "\n")
            # A row counts as done only once its values are on disk.
            features.flush()
            reasons.flush()
            os.fsync(reasons.fileno())
            for row, mel, _ in chunk:
                status[row] = DONE if mel is not None else SKIPPED
            status.flush()
            bar.update(len(chunk))
    return _finish(s, fma, features, status, reasons_path, identity, log)


def _finish(s, fma: FmaLabels, features, status, reasons_path: Path, identity, log) -> dict:
    """Write the feature dir of the complete rows, then drop the work files."""
    reasons = {}
    for line in reasons_path.read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        reasons[entry["row"]] = entry["reason"]
    ok = np.flatnonzero(status == DONE)
    if len(ok) == 0:
        common = pd.Series(list(reasons.values())).value_counts().head(3)
        summary = "; ".join(f"{n} {reason}" for reason, n in common.items())
        raise InputError(f"--audio {s.audio}: no clip could be decoded ({summary})")
    out = s.out
    final = np.lib.format.open_memmap(
        out / f".{FEATURES_FILE}.tmp", "w+", np.float16, (len(ok), *features.shape[1:])
    )
    for start in range(0, len(ok), 512):  # copy in blocks: memory stays bounded
        final[start : start + 512] = features[ok[start : start + 512]]
    final.flush()
    del final
    os.replace(out / f".{FEATURES_FILE}.tmp", out / FEATURES_FILE)
    np.save(out / LABELS_FILE, fma.labels[ok])
    (out / GENRES_FILE).write_text(json.dumps(list(fma.genres), indent=1), encoding="utf-8")
    np.save(out / SPLIT_FILE, fma.split[ok])
    np.save(out / TRACK_IDS_FILE, fma.track_ids[ok])
    skipped = [
        {
            "track_id": int(fma.track_ids[row]),
            "path": str(audio_path(s.audio, int(fma.track_ids[row]))),
            "reason": reason,
        }
        for row, reason in sorted(reasons.items())
    ] + [
        {"track_id": int(t), "path": "", "reason": "no genre label or split"} for t in fma.unlabeled
    ]
    pd.DataFrame(skipped, columns=["track_id", "path", "reason"]).to_csv(
        out / SKIPPED_FILE, index=False
    )
    counts = fma.labels[ok].sum(axis=0)
    summary = {
        "identity": identity,
        "tracks": int(len(ok)),
        "skipped_clips": len(reasons),
        "unlabeled_tracks": int(len(fma.unlabeled)),
        "genres": len(fma.genres),
        "split_sizes": {
            name: int((fma.split[ok] == value).sum()) for name, value in SPLITS.items()
        },
        "genre_counts_min_max": [int(counts.min()), int(counts.max())],
    }
    # Written last and whole: a kill before this leaves a resumable work dir, never a cut file.
    write_text_atomically(out / PREPARE_FILE, json.dumps(summary, indent=1))
    shutil.rmtree(out / WORK_DIR)
    log(
        f"wrote {out}: {len(ok):,} tracks x {len(fma.genres)} genres; "
        f"{len(reasons):,} clips skipped (see {out / SKIPPED_FILE})"
    )
    return summary
