"""A tiny Free Music Archive in FMA's exact file formats, written by the tests.

`fma_metadata/tracks.csv` has FMA's 52 columns under three header lines (group, column name,
`track_id`), genre lists as Python list literals; `genres.csv` has FMA's columns; clips are MP3
files at `fma_small/<first 3 digits>/<6-digit id>.mp3`. Each genre is a tone at its own pitch
plus noise, so a model can learn it. Some clips are broken the way FMA's are.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

TRACK_COLUMNS = {
    "album": "comments date_created date_released engineer favorites id information listens "
    "producer tags title tracks type",
    "artist": "active_year_begin active_year_end associated_labels bio comments date_created "
    "favorites id latitude location longitude members name related_projects tags website "
    "wikipedia_page",
    "set": "split subset",
    "track": "bit_rate comments composer date_created date_recorded duration favorites genre_top "
    "genres genres_all information interest language_code license listens lyricist number "
    "publisher tags title",
}
# genre_id -> (parent, title, top_level, pitch in Hz)
GENRES = {
    12: (0, "Rock", 12, 220.0),
    25: (12, "Punk", 12, 330.0),
    15: (0, "Electronic", 15, 440.0),
    236: (15, "Ambient Electronic", 15, 660.0),
    21: (0, "Hip-Hop", 21, 880.0),
    17: (0, "Folk", 17, 1320.0),
}
# Broken clips, as FMA has them: track id -> what is wrong.
BROKEN = {141: "empty", 142: "corrupt", 143: "short", 144: "missing"}
UNLABELED = 150


def _track_genres(i: int) -> list[int]:
    """Mostly one genre; every fifth track also has a second one (as FMA's multi-genre tracks)."""
    ids = list(GENRES)
    first = ids[i % len(ids)]
    if i % 5 == 0:
        return [first, ids[(i + 2) % len(ids)]]
    return [first]


def _write_clip(path: Path, genres: list[int], seconds: float, rng: np.random.Generator) -> None:
    import soundfile as sf

    rate = 44100
    t = np.arange(int(seconds * rate)) / rate
    wave = sum(np.sin(2 * np.pi * GENRES[g][3] * t) for g in genres) / len(genres)
    wave = 0.5 * wave + 0.05 * rng.standard_normal(len(t))
    stereo = np.stack([wave, wave], axis=1).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), stereo, rate, format="MP3")


def make_fma(root: Path, n_tracks: int = 40, seconds: float = 2.5, seed: int = 0) -> dict:
    """Write the archive under `root`; returns the paths and the ground truth."""
    rng = np.random.default_rng(seed)
    meta, audio = root / "fma_metadata", root / "fma_small"
    meta.mkdir(parents=True)
    columns = pd.MultiIndex.from_tuples(
        [(group, name) for group, names in TRACK_COLUMNS.items() for name in names.split()]
    )
    assert len(columns) == 52
    ids = [2 + 3 * i for i in range(n_tracks)] + list(BROKEN) + [UNLABELED]
    rows, truth = [], {}
    for i, track_id in enumerate(ids):
        genres = [] if track_id == UNLABELED else _track_genres(i)
        roots = {GENRES[g][2] for g in genres}
        split = ("training", "training", "training", "validation", "test")[i % 5]
        row = dict.fromkeys(columns, "")
        row[("set", "split")] = split
        row[("set", "subset")] = "small" if i % 7 else "medium"
        row[("track", "genres")] = str(genres)
        row[("track", "genres_all")] = str(sorted(set(genres) | roots))
        row[("track", "genre_top")] = GENRES[roots.pop()][1] if len(roots) == 1 else ""
        row[("track", "title")] = f"Track {track_id}"
        row[("track", "duration")] = int(seconds)
        row[("artist", "name")] = f"Artist {i % 4}, with comma"
        rows.append(row)
        truth[track_id] = {"genres": genres, "split": split, "subset": row[("set", "subset")]}
        path = audio / f"{track_id:06d}"[:3] / f"{track_id:06d}.mp3"
        kind = BROKEN.get(track_id)
        if kind == "missing":
            continue
        if kind == "empty":
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"")
        elif kind == "corrupt":
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"\xff\xfb\x90" + rng.bytes(3000))
        else:
            _write_clip(path, genres or [12], 0.3 if kind == "short" else seconds, rng)
    tracks = pd.DataFrame(rows, index=pd.Index(ids, name="track_id"), columns=columns)
    tracks.to_csv(meta / "tracks.csv")
    genres = pd.DataFrame(
        [
            {"genre_id": g, "#tracks": 0, "parent": p, "title": t, "top_level": top}
            for g, (p, t, top, _) in GENRES.items()
        ]
    )
    genres.to_csv(meta / "genres.csv", index=False)
    return {"metadata": meta, "audio": audio, "truth": truth}
