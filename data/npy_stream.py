"""Reading a large .npy array a block of rows at a time with plain reads.

A memory map of the file would do too, but every page it has read stays mapped and counts in
the process's resident memory until the map is dropped: tagging a 100 GB feature file would
look like using 100 GB. Plain reads go through the page cache, which the kernel reclaims, and
the process holds one block."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genretune.errors import InputError, first_line


@dataclass(frozen=True)
class NpyFile:
    path: Path
    shape: tuple[int, ...]
    dtype: np.dtype
    offset: int  # where the data starts (after the header)

    @property
    def rows(self) -> int:
        return self.shape[0] if self.shape else 1

    def blocks(self, rows: int) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, array of up to `rows` rows) in order."""
        row_shape = self.shape[1:]
        per_row = int(np.prod(row_shape, dtype=np.int64))
        with self.path.open("rb") as fh:
            fh.seek(self.offset)
            for start in range(0, self.rows, rows):
                n = min(rows, self.rows - start)
                data = np.fromfile(fh, dtype=self.dtype, count=n * per_row)
                if data.size != n * per_row:
                    raise InputError(f"{self.path}: cut short (ends within row {start})")
                yield start, data.reshape((n, *row_shape))


def open_npy(path: Path, flag: str) -> NpyFile:
    """The header of an .npy file, checked: one InputError naming `flag` and the file."""
    if not path.is_file():
        raise InputError(f"{flag} {path}: file not found")
    try:
        with path.open("rb") as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
            offset = fh.tell()
    except (ValueError, OSError, EOFError) as exc:
        reason = first_line(exc)
        raise InputError(f"{flag} {path}: not a readable .npy array ({reason})") from None
    if dtype.hasobject:
        raise InputError(f"{flag} {path}: holds Python objects, not numbers")
    if fortran and len(shape) > 1:
        raise InputError(f"{flag} {path}: a Fortran-order array; save it in C order")
    expected = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if path.stat().st_size < expected:
        raise InputError(f"{flag} {path}: cut short ({path.stat().st_size} of {expected} bytes)")
    return NpyFile(path, tuple(shape), dtype, offset)
