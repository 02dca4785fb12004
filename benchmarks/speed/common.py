"""What the speed measurements share: input shapes, the demo configuration, device sync."""

from __future__ import annotations

import torch

DEMO_SHAPE, FULL_SHAPE = (32, 64), (64, 128)


def demo_flat(**overrides) -> dict:
    """The demo profile's flat config at base 16, lr 5e-4 (the baseline's), with overrides."""
    from genretune.search.profiles import get_profile
    from genretune.search.space import profile_defaults

    return {**profile_defaults(get_profile("demo")), "base_channels": 16, "lr": 5e-4, **overrides}


def sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
