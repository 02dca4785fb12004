"""Where and how a run computes: device, threads, bf16 autocast, channels_last, resident data."""

from __future__ import annotations

import ctypes
import functools
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from genretune.data import InputError
from genretune.errors import BadValue


@dataclass(frozen=True)
class Runtime:
    device: str = "cpu"
    amp: bool = False  # bf16 autocast
    channels_last: bool = False
    data_on_device: bool = False  # copy the whole feature array to the device once, if it fits
    num_threads: int | None = None
    gpu_share: float = 1.0  # the share of the GPU this run may use (Ray's GPUs per trial)

    @property
    def torch_device(self) -> torch.device:
        return torch.device(self.device)


# bf16 autocast only where the GPU computes bf16 natively (Ampere and later); older GPUs train
# in fp32.
BF16_CAPABILITY = (8, 0)


def resolve_runtime(
    device: str = "auto", num_threads: int | None = None, gpu_share: float = 1.0
) -> Runtime:
    """CUDA when available (bf16 autocast where the GPU does bf16 well, cuDNN autotuning for
    the fixed input size, the data resident there when it fits the run's share), else CPU.

    channels_last is on everywhere: on a 2-core CPU it trains 1.1-1.5x faster than contiguous
    tensors, most at small widths (benchmarks/results/trial_speed.md, FLOP/s table).
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise BadValue("device", f" {device}: not a torch device (use auto, cpu or cuda)") from None
    if dev.type not in ("cpu", "cuda"):
        # torch parses mps, xpu, meta, ...; the training loop supports CPU and CUDA.
        raise BadValue("device", f" {device}: not supported (use auto, cpu or cuda)")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BadValue("device", f" {device}: CUDA is not available on this machine")
    on_gpu = dev.type == "cuda"
    if not 0 < gpu_share <= 1:
        raise InputError(f"a run's share of a GPU must be in (0, 1], got {gpu_share}")
    amp = False
    if on_gpu:
        amp = torch.cuda.get_device_capability(dev) >= BF16_CAPABILITY
        # Inputs have one size for the whole run: cuDNN's autotuner picks the fastest kernels.
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        if gpu_share < 1:
            # The run stays within its share, so the trials beside it on the GPU can use theirs.
            torch.cuda.set_per_process_memory_fraction(gpu_share, dev)
    return Runtime(
        device=str(dev),
        amp=amp,
        channels_last=True,
        data_on_device=on_gpu,
        num_threads=num_threads,
        gpu_share=gpu_share,
    )


# A resident copy of the features may take this part of the run's GPU memory budget; the rest
# is for the model, its optimizer state and the activations.
RESIDENT_FRACTION = 0.5


def device_budget(device: torch.device, share: float) -> int:
    """Bytes a run may use on the device: its share of the GPU, and no more than is free now
    (trials beside it may already hold theirs)."""
    free, total = torch.cuda.mem_get_info(device)
    return int(min(free, share * total))


def fits_on_device(array: np.ndarray, device: torch.device, share: float = 1.0) -> bool:
    """Whether a resident copy of `array` fits in its part of the run's GPU budget.

    On the CPU the answer is yes: a Runtime that asks for resident data there gets a private
    in-memory copy (resolve_runtime never asks; the tests do, to run the resident path).
    """
    if device.type != "cuda":
        return True
    return array.nbytes <= RESIDENT_FRACTION * device_budget(device, share)


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
    if HEAP_RELEASE_EVERY and batch_number % HEAP_RELEASE_EVERY == 0:
        trim_heap()


def trim_heap() -> None:
    """Hand the heap's free pages back to the OS now (glibc only; elsewhere nothing)."""
    trim = _malloc_trim()
    if trim is not None:
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
        if runtime.data_on_device and fits_on_device(features, self.device, runtime.gpu_share):
            try:
                self.resident = _copy_to_device(features, self.device)
            except torch.OutOfMemoryError:
                # Others took the memory meanwhile: stream the batches instead.
                warnings.warn(
                    f"features ({features.nbytes / 2**30:.1f} GiB) did not fit on {self.device}; "
                    "streaming them",
                    stacklevel=2,
                )
                torch.cuda.empty_cache()

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
        return self._host_batch(rows).to(self.device, non_blocking=True).float()

    def _host_batch(self, rows: np.ndarray) -> torch.Tensor:
        features = torch.from_numpy(np.asarray(self.features[rows]))
        if self.device.type == "cuda":
            # Page-locked host memory: the copy to the GPU runs beside the computation.
            features = features.pin_memory()
        return features

    def batches(self, rows, batch_size: int) -> Iterator[tuple[int, torch.Tensor]]:
        """(start, batch) over `rows` (from `rows()`) in order. Streaming to a GPU, the next
        batch is read from the (memory-mapped) array and pinned on a thread while the current
        one computes; everywhere else batches are made one by one."""
        starts = range(0, len(rows), batch_size)
        if self.resident is not None or self.device.type != "cuda":
            for start in starts:
                yield start, self.batch(rows[start : start + batch_size])
            return
        with ThreadPoolExecutor(max_workers=1) as reader:
            pending = None
            for start in starts:
                if pending is None:
                    pending = reader.submit(self._host_batch, rows[start : start + batch_size])
                host = pending.result()
                after = start + batch_size
                pending = (
                    reader.submit(self._host_batch, rows[after : after + batch_size])
                    if after < len(rows)
                    else None
                )
                yield start, host.to(self.device, non_blocking=True).float()
