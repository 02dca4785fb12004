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
