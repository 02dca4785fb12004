"""The GPU path exercised on a CPU-only machine: what Ray hands a trial and what a CPU build of
torch can do with it."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from genretune.data import InputError
from genretune.search.ray_cluster import check_trial_fits
from genretune.search.settings import Resources

pytestmark = pytest.mark.gpu_path


@pytest.mark.slow
def test_a_trial_needing_more_gpu_than_any_node_has_is_refused(local_ray):
    with pytest.raises(InputError, match="--gpus-per-trial 0.5: this machine has no GPU"):
        check_trial_fits(Resources(cpus_per_trial=1, gpus_per_trial=0.5))
    check_trial_fits(Resources(cpus_per_trial=1, gpus_per_trial=0))


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a torch that cannot use a GPU")
def test_a_trial_given_a_gpu_with_a_cpu_build_of_torch_fails_naming_the_fix(tmp_path):
    """Ray gives the trial a (fake) GPU; a CPU build of torch must not train on the CPU in
    silence. A fresh Ray with one fake GPU, in its own process."""
    script = textwrap.dedent(
        f"""
        import ray
        from ray import tune
        from genretune.search.trainable import train_trial

        ray.init(num_cpus=1, num_gpus=1, include_dashboard=False, log_to_driver=False)
        config = {{"synthetic_scale": 0.02, "base_channels": 4, "epochs": 1}}
        tuner = tune.Tuner(
            tune.with_resources(train_trial, {{"cpu": 1, "gpu": 1}}),
            param_space=config,
            run_config=tune.RunConfig(storage_path={str(tmp_path)!r}, name="gpu", verbose=0),
        )
        grid = tuner.fit()
        print("ERROR:", grid[0].error)
        ray.shutdown()
        """
    )
    res = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr[-3000:]
    error = res.stdout.split("ERROR:", 1)[1]
    assert "cannot use it" in error and "TORCH_SPEC" in error, error


class _FakeCuda:
    """torch.cuda's memory and device queries, as a GPU with `total` bytes would answer."""

    def __init__(self, monkeypatch, total: int, free: int, capability=(8, 0)):
        self.fractions: list[float] = []
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free, total))
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
        monkeypatch.setattr(
            torch.cuda,
            "set_per_process_memory_fraction",
            lambda fraction, device=None: self.fractions.append(fraction),
        )


GiB = 2**30


@pytest.fixture
def backend_flags():
    """resolve_runtime sets process-wide torch backend flags: put them back afterwards."""
    saved = (
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.allow_tf32,
        torch.backends.cuda.matmul.allow_tf32,
    )
    yield
    torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32 = saved[:2]
    torch.backends.cuda.matmul.allow_tf32 = saved[2]


def test_resident_data_is_budgeted_by_the_trials_share_of_the_gpu(monkeypatch):
    import numpy as np

    from genretune.model.device import fits_on_device

    cuda = torch.device("cuda")
    _FakeCuda(monkeypatch, total=16 * GiB, free=16 * GiB)
    # A quarter of a 16 GiB GPU is 4 GiB, half of it for the features: 2 GiB.
    assert fits_on_device(np.empty(0), cuda, share=0.25)
    big = type("Array", (), {"nbytes": 3 * GiB})()
    small = type("Array", (), {"nbytes": int(1.5 * GiB)})()
    assert not fits_on_device(big, cuda, share=0.25)
    assert fits_on_device(small, cuda, share=0.25)
    assert fits_on_device(big, cuda, share=1.0)
    # Trials beside it hold most of the GPU already: what is free is the limit.
    _FakeCuda(monkeypatch, total=16 * GiB, free=2 * GiB)
    assert not fits_on_device(small, cuda, share=0.25)


def test_a_cuda_runtime_stays_within_its_share_and_uses_bf16_only_where_native(
    monkeypatch, backend_flags
):
    from genretune.model.device import resolve_runtime

    ampere = _FakeCuda(monkeypatch, total=16 * GiB, free=16 * GiB, capability=(8, 0))
    runtime = resolve_runtime("cuda", 1, gpu_share=0.25)
    assert runtime.amp and runtime.data_on_device and runtime.gpu_share == 0.25
    assert ampere.fractions == [0.25]
    assert torch.backends.cudnn.benchmark and torch.backends.cuda.matmul.allow_tf32
    turing = _FakeCuda(monkeypatch, total=16 * GiB, free=16 * GiB, capability=(7, 5))
    runtime = resolve_runtime("cuda", 1, gpu_share=1.0)
    assert not runtime.amp, "bf16 autocast on a GPU without native bf16"
    assert turing.fractions == [], "a whole GPU needs no memory fraction"


def test_features_that_do_not_fit_after_all_are_streamed(monkeypatch):
    """The copy to the device fails (another trial took the memory): the run streams batches
    instead of failing."""
    import numpy as np

    from genretune.model import device as device_module
    from genretune.model.device import FeatureFeeder, Runtime

    def no_room(array, device):
        raise torch.OutOfMemoryError("CUDA out of memory (fake)")

    monkeypatch.setattr(device_module, "_copy_to_device", no_room)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    features = np.random.default_rng(0).standard_normal((10, 16, 16)).astype(np.float32)
    with pytest.warns(UserWarning, match="did not fit"):
        feeder = FeatureFeeder(features, Runtime(device="cpu", data_on_device=True))
    assert feeder.resident is None
    batches = list(feeder.batches(feeder.rows(np.arange(10)), 4))
    assert [start for start, _ in batches] == [0, 4, 8]
    np.testing.assert_array_equal(torch.cat([b for _, b in batches]).numpy(), features)


def test_cuda_out_of_memory_in_a_trial_says_what_to_change(monkeypatch):
    from genretune.model.config import config_from_flat
    from genretune.model.device import Runtime
    from genretune.search import trainable

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(trainable, "fit", out_of_memory)
    cfg = config_from_flat({"base_channels": 64, "batch_size": 32})
    runtime = Runtime(device="cpu", gpu_share=0.25)
    with pytest.raises(RuntimeError, match=r"CUDA out of memory in a trial holding 0.25 of a GPU"):
        trainable.fit_in_trial(None, cfg, runtime, None, None)
