"""Audio clip -> fixed-size log-mel spectrogram (librosa's defaults, computed with numpy/scipy).

Decoding uses `soundfile` (libsndfile >= 1.1 reads MP3), from the optional `audio` extra. The
mel filterbank is librosa's default (Slaney mel scale, Slaney area normalisation) and the
dB conversion is `power_to_db(S, ref=1.0, top_db=80)`, so a feature dir made here matches one
made with librosa up to float rounding.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from functools import lru_cache
from math import gcd
from pathlib import Path

import numpy as np


class ClipError(Exception):
    """A clip that cannot become a feature row (empty, too short, corrupt); the message is the
    reason written to skipped.csv."""


# Bounds far beyond any music-tagging setting; past them a value is a typo, and would ask for
# absurd amounts of memory or disk.
MAX_SAMPLE_RATE, MAX_N_FFT, MAX_N_MELS = 384_000, 65_536, 1024
MAX_FRAMES, MAX_SECONDS = 65_536, 3600


@dataclass(frozen=True)
class MelSpec:
    sample_rate: int = 22050
    n_fft: int = 2048
    hop_length: int = 512
    n_mels: int = 128
    frames: int = 1280  # 1280 hops of 512 at 22,050 Hz = 29.7 s, just under FMA's 30 s clips
    min_seconds: float = 10.0  # shorter clips are skipped, longer ones padded to `frames`

    def to_json(self) -> dict:
        return asdict(self)

    @property
    def min_samples(self) -> int:
        return int(self.min_seconds * self.sample_rate)

    def check(self) -> None:
        from genretune.errors import BadValue

        if not 1000 <= self.sample_rate <= MAX_SAMPLE_RATE:
            raise BadValue("sample_rate", f" must be in [1000, {MAX_SAMPLE_RATE}]")
        if not 16 <= self.n_fft <= MAX_N_FFT:
            raise BadValue("n_fft", f" must be in [16, {MAX_N_FFT}]")
        if not 1 <= self.hop_length <= self.n_fft:
            raise BadValue("hop_length", f" must be in [1, n_fft {self.n_fft}]")
        if not 16 <= self.n_mels <= MAX_N_MELS:
            raise BadValue("n_mels", f" must be in [16, {MAX_N_MELS}]")
        if not 16 <= self.frames <= MAX_FRAMES:
            raise BadValue("frames", f" must be in [16, {MAX_FRAMES}]")
        if self.n_mels > self.n_fft // 2 + 1:
            raise BadValue("n_mels", f" {self.n_mels} is above n_fft/2+1 = {self.n_fft // 2 + 1}")
        if not math.isfinite(self.min_seconds) or not 0 <= self.min_seconds <= MAX_SECONDS:
            raise BadValue("min_seconds", f" must be a number in [0, {MAX_SECONDS}]")


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above (librosa's htk=False)."""
    hz = np.asarray(hz, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(
        hz >= min_log_hz,
        min_log_mel + np.log(np.maximum(hz, 1e-10) / min_log_hz) / logstep,
        hz / f_sp,
    )


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(
        mel >= min_log_mel, min_log_hz * np.exp(logstep * (mel - min_log_mel)), f_sp * mel
    )


@lru_cache(maxsize=8)
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) triangular filters, area-normalised (librosa norm='slaney')."""
    fft_freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    mel_points = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(sample_rate / 2), n_mels + 2))
    widths = np.diff(mel_points)
    ramps = mel_points[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_points[2:] - mel_points[:-2]))[:, None]
    return weights.astype(np.float32)


def log_mel(signal: np.ndarray, spec: MelSpec) -> np.ndarray:
    """(n_mels, frames) float32 log-mel power in dB of a mono signal at spec.sample_rate."""
    n_fft, hop = spec.n_fft, spec.hop_length
    padded = np.pad(signal.astype(np.float32), n_fft // 2, mode="constant")  # center=True
    n_frames = 1 + (len(padded) - n_fft) // hop
    strides = (padded.strides[0] * hop, padded.strides[0])
    frames = np.lib.stride_tricks.as_strided(padded, (n_frames, n_fft), strides, writeable=False)
    window = np.hanning(n_fft + 1)[:-1].astype(np.float32)  # periodic Hann, as scipy/librosa
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2
    # float64: a float32 BLAS product depends on the thread count (blocking order), so the
    # same clip decoded in a 1-thread Ray task and a 2-thread process could differ in the
    # last bits and round to different float16 features.
    fb = mel_filterbank(spec.sample_rate, n_fft, spec.n_mels).astype(np.float64)
    mel = (fb @ power.T.astype(np.float64)).astype(np.float32)
    db = 10.0 * np.log10(np.maximum(mel, 1e-10))
    db = np.maximum(db, db.max() - 80.0)
    if db.shape[1] >= spec.frames:
        return db[:, : spec.frames]
    # A clip a little shorter than `frames` is padded with its own floor (silence).
    out = np.full((spec.n_mels, spec.frames), db.min(), dtype=np.float32)
    out[:, : db.shape[1]] = db
    return out


_STDERR_LOCK = threading.Lock()


@contextlib.contextmanager
def _native_stderr_discarded() -> Iterator[None]:
    """File descriptor 2 pointed at the null device while libsndfile and its MP3 decoder
    (mpg123) read a clip: they write notes of their own there ("Cannot read next header, a
    one-frame stream? Duh...") for a file that is not audio, which is already a skipped clip
    with its reason. Python's own sys.stderr is flushed first and restored after. Decoding runs
    in worker processes (each has its own descriptors); the lock keeps two threads of one
    process from restoring each other's descriptor."""
    with _STDERR_LOCK:
        try:
            sys.stderr.flush()
        except (AttributeError, OSError, ValueError):
            pass
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)


def decode(path: Path, spec: MelSpec) -> np.ndarray:
    """The clip's log-mel spectrogram; ClipError with the reason for a clip to skip."""
    import soundfile as sf
    from scipy.signal import resample_poly

    if not path.is_file():
        raise ClipError("missing file")
    if path.stat().st_size == 0:
        raise ClipError("empty file")
    try:
        with _native_stderr_discarded():
            data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # libsndfile's errors for unreadable files vary by format
        raise ClipError(f"corrupt or unreadable ({type(exc).__name__})") from None
    if data.size == 0:
        raise ClipError("no audio samples")
    mono = data.mean(axis=1)
    if rate != spec.sample_rate:
        g = gcd(int(rate), spec.sample_rate)
        mono = resample_poly(mono, spec.sample_rate // g, int(rate) // g).astype(np.float32)
    if not np.isfinite(mono).all():
        raise ClipError("non-finite samples")
    if len(mono) < spec.min_samples:
        raise ClipError(f"too short ({len(mono) / spec.sample_rate:.1f} s < {spec.min_seconds} s)")
    if float(np.abs(mono).max()) == 0.0:
        raise ClipError("silent (all samples zero)")
    return log_mel(mono, spec)
