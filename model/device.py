"""Where and how a run computes: device, threads, bf16 autocast, channels_last, resident data."""

from __future__ import annotations

import ctypes
import functools
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from genretune.data import InputError


@dataclass(frozen=True)
class Runtime:
    device: str = "cpu"
    amp: bool = False  # bf16 autocast
    channels_last: bool = False
    data_on_device: bool = False  # copy the whole feature array to the device once
    num_threads: int | None = None

    @property
    def torch_device(self) -> torch.device:
        return torch.device(self.device)


def resolve_runtime(device: str = "auto", num_threads: int | None = None) -> Runtime:
    """CUDA when available (with bf16 autocast and the data resident there), else CPU.

    channels_last is on everywhere: on a 2-core CPU it trains 1.1-1.5x faster than contiguous
    tensors, most at small widths (benchmarks/README.md, FLOP/s table).
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise InputError(f"--device {device}: not a torch device (use auto, cpu or cuda)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {device}: CUDA is not available on this machine")
    on_gpu = dev.type == "cuda"
    return Runtime(
        device=str(dev),
        amp=on_gpu,
        channels_last=True,
        data_on_device=on_gpu,
        num_threads=num_threads,
    )


def fits_on_device(array: np.ndarray, device: torch.device, fraction: float = 0.5) -> bool:
    """Whether `array` takes at most `fraction` of the CUDA device's free memory.

    On the CPU the answer is yes: a Runtime that asks for resident data there gets a private
    in-memory copy (resolve_runtime never asks; the tests do, to run the resident path).
    """
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return array.nbytes <= fraction * free


# Batches between two heap releases. glibc raises its mmap threshold each time a large tensor is
# freed, so later activations come from the heap, which fragments; without a release, a demo
# trial's private memory grew by 70-80 MiB from data scale 0.1 to 1.0 (ten times the batches per
# epoch), with one every 50 batches by ~7 MiB (benchmarks/trial_speed.py measures it).
HEAP_RELEASE_EVERY = 50


@functools.cache
def _malloc_trim():
    try:
        return ctypes.CDLL(None).malloc_trim  # the C library the interpreter runs on
    except (OSError, AttributeError):  # not glibc: nothing to release
        return None


def release_freed_heap(batch_number: int) -> None:
    """Every HEAP_RELEASE_EVERY batches, hand the heap's free pages back to the OS."""
    trim = _malloc_trim()
    if trim is not None and HEAP_RELEASE_EVERY and batch_number % HEAP_RELEASE_EVERY == 0:
        trim(0)


def _copy_to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    if device.type == "cpu":
        return torch.from_numpy(np.array(array))  # a private, writable copy
    with warnings.catch_warnings():
        # A read-only memory map is only the source of the copy to the device.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(np.ascontiguousarray(array)).to(device)


class FeatureFeeder:
    """Serves batches of features as float32 tensors on the run's device.

    On a GPU the whole feature array is copied to the device once when it fits, so batches are
    gathered there with no per-batch host-device copy. Otherwise rows are read from the (often
    memory-mapped, read-only) array and wrapped with `torch.from_numpy`, never copying the
    whole array per trial.
    """

    def __init__(self, features: np.ndarray, runtime: Runtime) -> None:
        self.features = features
        self.device = runtime.torch_device
        self.resident: torch.Tensor | None = None
        if runtime.data_on_device and fits_on_device(features, self.device):
            self.resident = _copy_to_device(features, self.device)

    def rows(self, idx: np.ndarray) -> np.ndarray | torch.Tensor:
        """Row indices as `batch` takes them: copied to the device once when the data lives
        there, so an epoch's batches are gathered with no host-device copy."""
        if self.resident is not None:
            return torch.from_numpy(np.ascontiguousarray(idx)).to(self.device)
        return idx

    def batch(self, rows: np.ndarray | torch.Tensor) -> torch.Tensor:
        """float32 features of `rows` (from `rows()`, or host indices) on the device."""
        if self.resident is not None:
            if isinstance(rows, np.ndarray):
                rows = self.rows(rows)
            return self.resident[rows].float()
        features = torch.from_numpy(np.asarray(self.features[rows]))
        return features.to(self.device, non_blocking=True).float()
