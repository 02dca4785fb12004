"""Decoding FMA's clips into log-mel rows, in chunks: in this process, in local processes, or
by any decoder a caller hands to prepare_fma (`prepare-fma --address` runs chunks as Ray tasks;
data/ itself never imports Ray)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from genretune.data.audio import ClipError, MelSpec, decode


def audio_path(audio_dir: Path, track_id: int) -> Path:
    name = f"{track_id:06d}"
    return audio_dir / name[:3] / f"{name}.mp3"


def decode_chunk(
    audio_dir: str, spec: MelSpec, rows: list[tuple[int, int]]
) -> list[tuple[int, np.ndarray | None, str]]:
    """(row, features or None, skip reason) for each (row, track id): the unit of work of a
    decoding process or of a remote task."""
    out = []
    for row, track_id in rows:
        try:
            out.append((row, decode(audio_path(Path(audio_dir), track_id), spec), ""))
        except ClipError as exc:
            out.append((row, None, str(exc)))
        except Exception as exc:  # one odd clip must not stop a day-long preparation
            out.append((row, None, f"failed to decode ({type(exc).__name__}: {exc})"[:200]))
    return out


def chunks(rows: list[tuple[int, int]], size: int) -> Iterator[list[tuple[int, int]]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


# A decoder: (audio dir, mel spec, [(row, track id), ...]) -> decode_chunk's lists, in any order.
Decoder = Callable[[Path, MelSpec, list[tuple[int, int]]], Iterator[list]]


def local_decoder(workers: int) -> Decoder:
    """Decoding in this process (1) or in `workers` local processes."""

    def results(audio_dir: Path, spec: MelSpec, rows) -> Iterator[list]:
        if workers == 1:
            for chunk in chunks(rows, 8):
                yield decode_chunk(str(audio_dir), spec, chunk)
            return
        with ProcessPoolExecutor(max_workers=workers) as pool:
            pending = [pool.submit(decode_chunk, str(audio_dir), spec, c) for c in chunks(rows, 8)]
            for future in pending:
                yield future.result()

    return results
